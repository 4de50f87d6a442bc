-- How each body is held (see bodies.go): 0 the bytes as captured, 1 one zstd
-- frame of them; NULL where there is no such message, and in rows written
-- before this migration, which hold the bytes as captured. The version also
-- keeps an older phonehome, which would show compressed bytes, from reading
-- the database.
ALTER TABLE flows ADD COLUMN req_body_enc INTEGER;
ALTER TABLE flows ADD COLUMN resp_body_enc INTEGER;
