package report

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"phonehome/internal/capture/har"
	"phonehome/internal/flow"
)

// An evidence pack is what a person attaches to a data-access request (GDPR
// Article 15): for each party, the requests that carried their data, as HAR
// (which browsers and proxies open), and a manifest with the SHA-256 of every
// file, also as SHA256SUMS for `sha256sum -c`.

const maxEvidenceFiles = 200 // open HAR files; further parties share one

// Evidence writes an evidence pack into a directory, one flow at a time.
type Evidence struct {
	dir     string
	creator string
	files   map[string]*evidenceFile
	order   []*evidenceFile
	closed  bool
}

type evidenceFile struct {
	Name    string      `json:"file"`
	Party   string      `json:"party"`
	Hosts   []string    `json:"hosts"`
	Kinds   []flow.Kind `json:"kinds"`
	Entries int         `json:"entries"`
	Bytes   int64       `json:"bytes"`
	SHA256  string      `json:"sha256"`
	fh      *os.File
	bw      *bufio.Writer
	sum     hash.Hash
	count   *countingWriter
	hw      *har.Writer
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewEvidence prepares dir (created if missing; it must not hold an earlier pack).
func NewEvidence(dir, creator string) (*Evidence, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		return nil, fmt.Errorf("evidence: %s already holds an evidence pack: name an empty or new directory", dir)
	}
	return &Evidence{dir: dir, creator: creator, files: map[string]*evidenceFile{}}, nil
}

// Add writes f into its party's HAR file if it carried reported findings.
func (e *Evidence) Add(f *flow.Flow) error {
	if f.Request == nil {
		return nil
	}
	var kinds []flow.Kind
	for _, x := range f.Findings {
		if !x.Context && !contains(kinds, x.Kind) {
			kinds = append(kinds, x.Kind)
		}
	}
	if len(kinds) == 0 {
		return nil
	}
	party := f.Dest.Owner
	if party == "" {
		party = f.Dest.Site
	}
	if party == "" {
		party = f.HostOrAddr()
	}
	ef := e.files[party]
	if ef == nil && len(e.order) >= maxEvidenceFiles {
		party = "other parties"
		ef = e.files[party]
	}
	if ef == nil {
		var err error
		if ef, err = e.open(party); err != nil {
			return err
		}
	}
	host := f.HostOrAddr()
	if !contains(ef.Hosts, host) {
		ef.Hosts = append(ef.Hosts, host)
	}
	for _, k := range kinds {
		if !contains(ef.Kinds, k) {
			ef.Kinds = append(ef.Kinds, k)
		}
	}
	return ef.hw.Add(f)
}

func (e *Evidence) open(party string) (*evidenceFile, error) {
	name := fileName(party) + ".har"
	for i := 2; e.taken(name); i++ {
		name = fmt.Sprintf("%s-%d.har", fileName(party), i)
	}
	fh, err := os.Create(filepath.Join(e.dir, name))
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	ef := &evidenceFile{Name: name, Party: party, fh: fh, sum: sha256.New()}
	ef.bw = bufio.NewWriter(fh)
	ef.count = &countingWriter{w: io.MultiWriter(ef.bw, ef.sum)}
	if ef.hw, err = har.NewWriter(ef.count, e.creator); err != nil {
		fh.Close()
		return nil, err
	}
	e.files[party] = ef
	e.order = append(e.order, ef)
	return ef, nil
}

func (e *Evidence) taken(name string) bool {
	for _, ef := range e.order {
		if ef.Name == name {
			return true
		}
	}
	return false
}

// fileName turns a party's name into a portable file name.
func fileName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-.")
	if out == "" {
		out = "party"
	}
	return clip(out, 60)
}

// Manifest describes an evidence pack.
type Manifest struct {
	Created string          `json:"created"`
	Creator string          `json:"creator"`
	Note    string          `json:"note"`
	Files   []*evidenceFile `json:"files"`
}

// Close finishes every HAR file and writes manifest.json and SHA256SUMS.
// It returns the manifest.
func (e *Evidence) Close(now time.Time) (*Manifest, error) {
	if e.closed {
		return nil, fmt.Errorf("evidence: closed twice")
	}
	e.closed = true
	var firstErr error
	for _, ef := range e.order {
		err := ef.hw.Close()
		if err == nil {
			err = ef.bw.Flush()
		}
		if cerr := ef.fh.Close(); err == nil {
			err = cerr
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("evidence: %s: %w", ef.Name, err)
		}
		ef.Entries = ef.hw.Entries()
		ef.Bytes = ef.count.n
		ef.SHA256 = hex.EncodeToString(ef.sum.Sum(nil))
		sort.Strings(ef.Hosts)
		sortKinds(ef.Kinds)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	files := append([]*evidenceFile(nil), e.order...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	m := &Manifest{Created: now.UTC().Format(time.RFC3339), Creator: e.creator, Files: files,
		Note: "Each HAR file holds the requests that carried personal data to one party, as captured. SHA-256 sums let anyone check the files were not changed."}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(e.dir, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	var sums strings.Builder
	for _, ef := range files {
		fmt.Fprintf(&sums, "%s  %s\n", ef.SHA256, ef.Name)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "SHA256SUMS"), []byte(sums.String()), 0o644); err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	return m, nil
}
