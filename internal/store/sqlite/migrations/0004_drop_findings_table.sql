-- Findings live packed in flows.findings (0003); the table of one row per
-- finding cost most of the time of storing a tracker request and was read by
-- nothing since. Databases older than 0003 were packed from it before this.
DROP TABLE findings;
