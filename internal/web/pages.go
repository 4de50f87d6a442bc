package web

import (
	"archive/zip"
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"phonehome/internal/flow"
	"phonehome/internal/report"
)

//go:embed templates/*.html static/*
var assets embed.FS

// CertPage is the address a device opens, through the proxy, to install the CA.
const CertPage = "http://phonehome.cert/"

type pages struct {
	t      map[string]*template.Template
	static http.Handler
	qr     []byte // PNG of CertPage
}

var pageNames = []string{"live", "parties", "flow", "devices", "ids", "markers", "sessions", "diff", "setup", "error"}

func newPages() (*pages, error) {
	funcs := template.FuncMap{
		"mask":  func(k flow.Kind, v string) string { return report.Mask(k, v) },
		"bytes": report.Bytes,
		"clock": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Local().Format("2006-01-02 15:04:05")
		},
		"pct":     func(f float64) string { return strconv.Itoa(int(f*100+0.5)) + "%" },
		"link":    report.LinkSentence,
		"label":   report.FieldLabel,
		"has":     func(ks []flow.Kind, k flow.Kind) bool { return slices.Contains(ks, k) },
		"bars":    bars,
		"why":     func(x flow.Finding) string { return why(x, nil) }, // the row shows the path beside it
		"deref":   func(t *time.Time) time.Time { return *t },
		"add":     func(a, b int) int { return a + b },
		"kindsOf": kindsOf,
		"join":    func(ss []string) string { return strings.Join(ss, ", ") },
		"joinKind": func(ks []flow.Kind) string {
			s := make([]string, len(ks))
			for i, k := range ks {
				s[i] = string(k)
			}
			return strings.Join(s, ", ")
		},
	}
	p := &pages{t: map[string]*template.Template{}}
	for _, n := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("web UI: template %s: %w", n, err)
		}
		p.t[n] = t
	}
	sub, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	p.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	if p.qr, err = qrcode.Encode(CertPage, qrcode.Medium, 256); err != nil {
		return nil, fmt.Errorf("web UI: QR code: %w", err)
	}
	return p, nil
}

// kindsOf is every kind the parties received, for the matrix's columns.
func kindsOf(ps []report.Party) []flow.Kind {
	var out []flow.Kind
	for _, p := range ps {
		for _, k := range p.Kinds {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

// Bar is one slice of a timeline chart, in SVG units.
type Bar struct{ X, Y, W, H, N int }

// bars scales counts to a 600×40 chart.
func bars(counts []int) []Bar {
	top := 1
	for _, c := range counts {
		top = max(top, c)
	}
	if len(counts) == 0 {
		return nil
	}
	w := max(600/len(counts), 1)
	out := make([]Bar, 0, len(counts))
	for i, c := range counts {
		h := c * 40 / top
		if c > 0 {
			h = max(h, 1)
		}
		out = append(out, Bar{X: i * w, Y: 40 - h, W: max(w-1, 1), H: h, N: c})
	}
	return out
}

// pageData is what every page gets.
type pageData struct {
	Title    string
	Page     string
	Session  Session
	Sessions []Session
	Capture  bool // a capture runs: live stream, switches and markers work
	Switches bool
	Q        template.URL // "session=ID", to keep the session across links (made of a number only)
	Data     any
}

func (s *Server) pageRoutes() {
	m := s.mux
	m.Handle("GET /static/", s.pages.static)
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/icon.svg", http.StatusMovedPermanently)
	})
	m.HandleFunc("GET /{$}", s.page("live", "Live", s.liveData))
	m.HandleFunc("GET /parties", s.page("parties", "Parties", s.reportData))
	m.HandleFunc("GET /ids", s.page("ids", "Identifiers", s.reportData))
	m.HandleFunc("GET /devices", s.page("devices", "Devices", func(r *http.Request, x *index) (any, error) { return x.devices(s.known()), nil }))
	m.HandleFunc("GET /markers", s.page("markers", "Markers", s.markerData))
	m.HandleFunc("GET /sessions", s.page("sessions", "Sessions", func(*http.Request, *index) (any, error) { return nil, nil }))
	m.HandleFunc("GET /setup", s.page("setup", "Set up a phone", s.setupData))
	m.HandleFunc("GET /flows/{id}", s.flowPage)
	m.HandleFunc("GET /diff", s.diffPage)
	m.HandleFunc("GET /setup/qr.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(s.pages.qr)
	})
	m.HandleFunc("GET /setup/phonehome-ca.pem", s.caFile)
	m.HandleFunc("GET /sessions/{id}/evidence.zip", s.evidence)
}

func (s *Server) render(w http.ResponseWriter, status int, name string, d pageData) {
	var b bytes.Buffer
	if err := s.pages.t[name].Execute(&b, d); err != nil {
		s.opts.Logger.Warn("web UI: rendering a page failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// base fills what every page shows; err is a session that could not be opened.
func (s *Server) base(r *http.Request, name, title string) (pageData, *index, error) {
	d := pageData{Title: title, Page: name, Capture: s.live != nil, Switches: s.rules != nil}
	all, err := s.sessions(r.Context())
	if err != nil {
		return d, nil, err
	}
	d.Sessions = all
	sess, x, err := s.session(r.Context(), r)
	if err != nil {
		return d, nil, err
	}
	d.Session = sess
	if r.URL.Query().Get("session") != "" {
		d.Q = template.URL("session=" + strconv.FormatInt(sess.ID, 10))
	}
	return d, x, nil
}

func (s *Server) page(name, title string, data func(*http.Request, *index) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, x, err := s.base(r, name, title)
		if err == nil {
			d.Data, err = data(r, x)
		}
		if err != nil {
			d.Page, d.Data = "error", err.Error()
			s.render(w, http.StatusNotFound, "error", d)
			return
		}
		s.render(w, http.StatusOK, name, d)
	}
}

func (s *Server) liveData(r *http.Request, x *index) (any, error) { return nil, nil }

// reportView is the Parties and Identifiers pages' data: the report's
// document and what the policy stopped.
type reportView struct {
	*report.Doc
	Stopped []report.Stopped
}

func (s *Server) reportData(r *http.Request, x *index) (any, error) {
	return reportView{Doc: x.report(s.opts.Now()), Stopped: x.stoppedParties()}, nil
}

func (s *Server) markerData(r *http.Request, x *index) (any, error) {
	sess, _, err := s.session(r.Context(), r)
	if err != nil {
		return nil, err
	}
	ms, err := s.markersOf(r.Context(), sess)
	if err != nil {
		return nil, err
	}
	g := x.groups(ms)
	slices.Reverse(g) // newest first
	return g, nil
}

type setupInfo struct {
	Proxy, Fingerprint, CertPage string
	HasCA                        bool
	WireGuard                    bool // a WireGuard server runs: peers can be added here
	Peers                        []KnownDevice
}

func (s *Server) setupData(*http.Request, *index) (any, error) {
	info := setupInfo{Proxy: s.opts.ProxyAddr, Fingerprint: s.opts.CAFingerprint, CertPage: CertPage, HasCA: len(s.opts.CAPEM) > 0,
		WireGuard: s.opts.WireGuard != nil}
	if info.WireGuard {
		var err error
		if info.Peers, err = s.opts.WireGuard.Peers(); err != nil {
			return nil, err
		}
	}
	return info, nil
}

func (s *Server) caFile(w http.ResponseWriter, r *http.Request) {
	if len(s.opts.CAPEM) == 0 {
		http.Error(w, "no CA certificate is known here: phonehome ca shows where it is", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-x509-ca-cert")
	w.Header().Set("Content-Disposition", `attachment; filename="phonehome-ca.pem"`)
	_, _ = w.Write(s.opts.CAPEM)
}

// flowView is the flow page's data.
type flowView struct {
	D    FlowDetail
	F    *flow.Flow
	Kept bool // the request body was kept whole
}

func (s *Server) flowPage(w http.ResponseWriter, r *http.Request) {
	d, _, err := s.base(r, "flow", "Flow")
	if err != nil {
		d.Page, d.Data = "error", err.Error()
		s.render(w, http.StatusNotFound, "error", d)
		return
	}
	f, _, ok := s.flowRequestPage(w, r, d)
	if !ok {
		return
	}
	d.Title = "Flow " + strconv.FormatInt(f.ID, 10) + " to " + f.HostOrAddr()
	d.Data = flowView{D: detailOf(f), F: f}
	s.render(w, http.StatusOK, "flow", d)
}

// flowRequestPage is flowRequest answering with an error page.
func (s *Server) flowRequestPage(w http.ResponseWriter, r *http.Request, d pageData) (*flow.Flow, Session, bool) {
	rec := &statusRecorder{header: http.Header{}}
	f, sess, ok := s.flowRequest(rec, r)
	if !ok {
		d.Page, d.Data = "error", strings.TrimSpace(rec.body.String())
		s.render(w, rec.status, "error", d)
	}
	return f, sess, ok
}

// statusRecorder catches an API error to show it on a page instead.
type statusRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *statusRecorder) WriteHeader(s int)           { r.status = s }

// diffView is the diff page's data.
type diffView struct {
	A, B     Session
	Headline string
	Text     string
}

func (s *Server) diffPage(w http.ResponseWriter, r *http.Request) {
	d, _, err := s.base(r, "diff", "Compare two sessions")
	if err == nil {
		var v diffView
		var a, b *index
		if v.A, a, err = s.sessionByParam(r.Context(), r.URL.Query().Get("a")); err == nil {
			if v.B, b, err = s.sessionByParam(r.Context(), r.URL.Query().Get("b")); err == nil {
				before, after := *a.report(s.opts.Now()), *b.report(s.opts.Now())
				before.Session, after.Session = v.A.Name, v.B.Name
				dd := report.Diff(&before, &after)
				var t strings.Builder
				if err = report.WriteDiffText(&t, dd, false); err == nil {
					v.Headline, v.Text = dd.Headline(), t.String()
					d.Data = v
				}
			}
		}
	}
	if err != nil {
		d.Page, d.Data = "error", err.Error()
		s.render(w, http.StatusNotFound, "error", d)
		return
	}
	s.render(w, http.StatusOK, "diff", d)
}

// evidence writes the session's evidence pack (per party, the requests that
// carried personal data as HAR, with their SHA-256 sums) as a zip.
func (s *Server) evidence(w http.ResponseWriter, r *http.Request) {
	if s.opts.Store == nil {
		http.Error(w, "no database: evidence packs are made from stored sessions", http.StatusNotFound)
		return
	}
	sess, _, err := s.sessionByParam(r.Context(), r.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	dir, err := os.MkdirTemp("", "phonehome-evidence-")
	if err != nil {
		http.Error(w, "make a temporary directory for the pack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer os.RemoveAll(dir)
	ev, err := report.NewEvidence(filepath.Join(dir, "pack"), "phonehome web UI")
	if err == nil {
		err = s.opts.Store.Flows(r.Context(), sess.ID, true, ev.Add)
		if _, cerr := ev.Close(s.opts.Now()); err == nil {
			err = cerr
		}
	}
	if err != nil {
		http.Error(w, "make the evidence pack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+fileName(sess.Name)+`-evidence.zip"`)
	zw := zip.NewWriter(w)
	root := filepath.Join(dir, "pack")
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fw, err := zw.Create(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		fh, err := os.Open(p)
		if err != nil {
			return err
		}
		defer fh.Close()
		_, err = io.Copy(fw, fh)
		return err
	})
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		s.opts.Logger.Warn("web UI: writing an evidence pack failed", "err", err)
	}
}
