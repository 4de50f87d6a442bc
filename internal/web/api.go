package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"phonehome/internal/flow"
	"phonehome/internal/report"
)

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /api/sessions", s.apiSessions)
	m.HandleFunc("GET /api/flows", s.apiFlows)
	m.HandleFunc("GET /api/flows/{id}", s.apiFlow)
	m.HandleFunc("GET /api/events", s.apiEvents)
	m.HandleFunc("GET /api/report", s.apiReport)
	m.HandleFunc("GET /api/rules", s.apiRules)
	m.HandleFunc("POST /api/rules", s.apiAddRule)
	m.HandleFunc("DELETE /api/rules/{id}", s.apiDeleteRule)
	m.HandleFunc("DELETE /api/rules", s.apiDeleteRule)
	m.HandleFunc("GET /api/markers", s.apiMarkers)
	m.HandleFunc("POST /api/markers", s.apiAddMarker)
	m.HandleFunc("GET /api/wireguard/peers", s.apiPeers)
	m.HandleFunc("POST /api/wireguard/peers", s.apiAddPeer)
	s.pageRoutes()
}

// apiError is the body of every failed API call.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true) // a body shown by a careless client stays text
	_ = enc.Encode(v)
}

func fail(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, apiError{Error: fmt.Sprintf(format, args...)})
}

// sessions lists the store's sessions, the live one marked; with no store,
// the live one alone.
func (s *Server) sessions(ctx context.Context) ([]Session, error) {
	var out []Session
	if s.opts.Store != nil {
		var err error
		if out, err = s.storedSessions(ctx); err != nil {
			return nil, err
		}
	}
	if s.live == nil {
		return out, nil
	}
	for i := range out {
		if out[i].ID == s.opts.LiveSession.ID {
			out[i].Live = true
			out[i].Flows = int64(s.live.count())
			return out, nil
		}
	}
	ls := s.opts.LiveSession
	ls.Live, ls.Flows = true, int64(s.live.count())
	return append(out, ls), nil
}

// sessionsFor is how long the store's list of sessions is reused: it counts
// every session's flows, and every page asks for it.
const sessionsFor = 2 * time.Second

func (s *Server) storedSessions(ctx context.Context) ([]Session, error) {
	now := s.opts.Now()
	s.mu.Lock()
	if s.sessList != nil && now.Sub(s.sessAt) < sessionsFor && now.After(s.sessAt) {
		out := append([]Session(nil), s.sessList...)
		s.mu.Unlock()
		return out, nil
	}
	s.mu.Unlock()
	out, err := s.opts.Store.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.sessList, s.sessAt = append([]Session{}, out...), now
	s.mu.Unlock()
	return out, nil
}

// errNoSession: the session asked for is not there.
var errNoSession = errors.New("no such session")

// session finds the session a request names with ?session=ID (default: the
// live one, else the newest) and its index, reading it from the store on
// first use.
func (s *Server) session(ctx context.Context, r *http.Request) (Session, *index, error) {
	return s.sessionByParam(ctx, r.URL.Query().Get("session"))
}

func (s *Server) sessionByParam(ctx context.Context, p string) (Session, *index, error) {
	all, err := s.sessions(ctx)
	if err != nil {
		return Session{}, nil, err
	}
	var sess Session
	switch {
	case p == "" && s.live != nil:
		sess = s.opts.LiveSession
	case p == "":
		if len(all) == 0 {
			return Session{}, nil, fmt.Errorf("%w: the database holds no sessions yet (phonehome run or analyze --db stores them)", errNoSession)
		}
		sess = all[len(all)-1]
	default:
		id, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return Session{}, nil, fmt.Errorf("%w %q: name a session by its id, as /api/sessions lists them", errNoSession, p)
		}
		found := false
		for _, x := range all {
			if x.ID == id {
				sess, found = x, true
			}
		}
		if !found {
			return Session{}, nil, fmt.Errorf("%w %d: /api/sessions lists them", errNoSession, id)
		}
	}
	if s.live != nil && sess.ID == s.opts.LiveSession.ID {
		sess.Live = true
		return sess, s.live, nil
	}
	x, err := s.stored(ctx, sess.ID)
	return sess, x, err
}

// keptIndexes is how many stored sessions' indexes are held at once.
const keptIndexes = 4

// stored returns a stored session's index, reading the session once
// however many requests ask at the same time.
func (s *Server) stored(ctx context.Context, id int64) (*index, error) {
	for {
		s.mu.Lock()
		if x := s.indexes[id]; x != nil {
			s.mu.Unlock()
			return x, nil
		}
		wait, busy := s.loading[id]
		if !busy {
			wait = make(chan struct{})
			s.loading[id] = wait
		}
		s.mu.Unlock()
		if busy {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		// read for the server, not for this request: a tab closed meanwhile
		// must not waste the read others wait for
		x := newIndex()
		x.summarizeApart()
		err := s.opts.Store.Flows(s.ctx, id, false, func(f *flow.Flow) error { x.add(f, false); return nil })
		x.endSummary()
		s.mu.Lock()
		delete(s.loading, id)
		close(wait)
		if err == nil {
			if len(s.indexes) >= keptIndexes {
				for k := range s.indexes {
					delete(s.indexes, k)
					break
				}
			}
			s.indexes[id] = x
		}
		s.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("read session %d: %w", id, err)
		}
		s.mu.Lock()
		if !s.closing { // Close waits for what started before it, nothing after
			s.bg.Go(func() { s.warm(id, x) })
		}
		s.mu.Unlock()
		return x, nil
	}
}

// warm reads a stored session again, whole, after its index is built, and
// keeps its newest flows for their pages: the store reads flows in the
// order they were written, so the newest would otherwise be the slowest to
// open.
func (s *Server) warm(id int64, x *index) {
	select { // after the summary: the two would share the cores
	case <-x.sumDone:
	case <-s.ctx.Done():
		return
	}
	err := s.opts.Store.Flows(s.ctx, id, true, func(f *flow.Flow) error { x.keep(f); return nil })
	if err != nil && s.ctx.Err() == nil {
		s.opts.Logger.Warn("web UI: reading a session's newest flows whole failed; their pages read them when opened", "session", id, "err", err)
	}
}

// preload builds the index of the newest stored session, so that the UI's
// first page does not wait for it.
func (s *Server) preload() {
	all, err := s.sessions(s.ctx)
	if err != nil || len(all) == 0 {
		return
	}
	if _, err := s.stored(s.ctx, all[len(all)-1].ID); err != nil && s.ctx.Err() == nil {
		s.opts.Logger.Warn("web UI: reading the newest session failed", "err", err)
	}
}

func (s *Server) apiSessions(w http.ResponseWriter, r *http.Request) {
	all, err := s.sessions(r.Context())
	if err != nil {
		fail(w, http.StatusInternalServerError, "list sessions: %v", err)
		return
	}
	if all == nil {
		all = []Session{}
	}
	writeJSON(w, http.StatusOK, all)
}

// sessionFailed answers a request whose session could not be opened.
func sessionFailed(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, errNoSession) {
		status = http.StatusNotFound
	}
	fail(w, status, "%v", err)
}

// queryOf reads the filters of /api/flows.
func queryOf(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Device: v.Get("device"), Party: v.Get("party"), Kind: flow.Kind(v.Get("kind")), Host: v.Get("host"), Verdict: v.Get("verdict")}
	if s := v.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return q, fmt.Errorf("before=%q: give the id of a flow, as next in the last page", s)
		}
		q.Before = n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, fmt.Errorf("limit=%q: give a number of flows from 1 to 1000", s)
		}
		q.Limit = n
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if s := v.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return q, fmt.Errorf("%s=%q: give a time as 2006-01-02T15:04:05Z", p.name, s)
			}
			*p.to = t
		}
	}
	return q, nil
}

func (s *Server) apiFlows(w http.ResponseWriter, r *http.Request) {
	q, err := queryOf(r)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	_, x, err := s.session(r.Context(), r)
	if err != nil {
		sessionFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, x.page(q))
}

// flowOf finds a flow of a session: the index holds the live session's
// newest whole; the others are read from the store.
func (s *Server) flowOf(ctx context.Context, sess Session, x *index, id int64) (*flow.Flow, error) {
	if f := x.flow(id); f != nil {
		return f, nil
	}
	if !x.has(id) {
		return nil, ErrNoFlow
	}
	if s.opts.Store == nil {
		return nil, fmt.Errorf("flow %d is no longer held in memory and there is no database to read it from", id)
	}
	return s.opts.Store.Flow(ctx, sess.ID, id)
}

// FlowDetail is /api/flows/{id}: the flow in its JSON Lines form, with its
// findings, its decode tree and the bodies as captured (text, up to 64 KiB).
type FlowDetail struct {
	report.FlowJSON
	Device       string         `json:"device"`
	Party        string         `json:"party"`
	Owner        string         `json:"owner,omitempty"`
	Category     string         `json:"category,omitempty"`
	App          string         `json:"app,omitempty"`
	Findings     []flow.Finding `json:"findings"`
	Tree         []*Node        `json:"decoded"`
	RequestText  string         `json:"request_text,omitempty"`
	ResponseText string         `json:"response_text,omitempty"`
}

func (s *Server) flowRequest(w http.ResponseWriter, r *http.Request) (*flow.Flow, Session, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		fail(w, http.StatusBadRequest, "flow %q: give a flow's id, as /api/flows lists them", r.PathValue("id"))
		return nil, Session{}, false
	}
	sess, x, err := s.session(r.Context(), r)
	if err != nil {
		sessionFailed(w, err)
		return nil, Session{}, false
	}
	f, err := s.flowOf(r.Context(), sess, x, id)
	if errors.Is(err, ErrNoFlow) {
		fail(w, http.StatusNotFound, "no flow %d in session %q: /api/flows lists them", id, sess.Name)
		return nil, Session{}, false
	}
	if err != nil {
		fail(w, http.StatusInternalServerError, "read flow %d: %v", id, err)
		return nil, Session{}, false
	}
	return f, sess, true
}

func detailOf(f *flow.Flow) FlowDetail {
	d := FlowDetail{FlowJSON: report.ToJSON(f), Device: f.DeviceName(), Party: partyOf(f), Owner: f.Dest.Owner,
		Category: f.Dest.Category, App: f.App, Findings: f.Findings, Tree: decodeTree(f)}
	if d.Findings == nil {
		d.Findings = []flow.Finding{}
	}
	if f.Request != nil {
		d.RequestText = bodyText(f.Request.Body.Data)
	}
	if f.Response != nil {
		d.ResponseText = bodyText(f.Response.Body.Data)
	}
	return d
}

func (s *Server) apiFlow(w http.ResponseWriter, r *http.Request) {
	f, _, ok := s.flowRequest(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, detailOf(f))
}

func (s *Server) apiReport(w http.ResponseWriter, r *http.Request) {
	sess, x, err := s.session(r.Context(), r)
	if err != nil {
		sessionFailed(w, err)
		return
	}
	doc := x.report(s.opts.Now())
	d := *doc
	d.Session, d.Source = sess.Name, sess.Source
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		// escaped as writeJSON does: values are hostile, and a client may
		// paste them into a page
		var b bytes.Buffer
		if err = report.WriteJSON(&b, &d); err == nil {
			var esc bytes.Buffer
			json.HTMLEscape(&esc, b.Bytes())
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, err = w.Write(esc.Bytes())
		}
	case "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+fileName(sess.Name)+`.html"`)
		err = report.WriteHTML(w, &d)
	case "md", "markdown":
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		err = report.WriteMarkdown(w, &d)
	default:
		fail(w, http.StatusBadRequest, "format=%q: give json, html or md", f)
		return
	}
	if err != nil {
		s.opts.Logger.Warn("web UI: writing a report failed", "err", err)
	}
}

// fileName makes a session's name safe as a download's file name.
func fileName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "session"
	}
	return string(b)
}

// RulesDoc is GET /api/rules: the switches, newest first (the first that
// matches decides), then the command line's rules.
type RulesDoc struct {
	Rules       []Switch `json:"rules"`
	CommandLine []string `json:"command_line"`
}

func (s *Server) rulesDoc() RulesDoc {
	sw, base := s.rules.all()
	for i := range sw {
		if s.live != nil {
			sw[i].Stopped = s.live.stoppedBy(sw[i].Text)
		}
	}
	if sw == nil {
		sw = []Switch{}
	}
	return RulesDoc{Rules: sw, CommandLine: base}
}

func (s *Server) noRules(w http.ResponseWriter) bool {
	if s.rules == nil {
		fail(w, http.StatusNotFound, "no rules to change: nothing is being captured (the switches work under phonehome run)")
		return true
	}
	return false
}

func (s *Server) apiRules(w http.ResponseWriter, r *http.Request) {
	if s.noRules(w) {
		return
	}
	writeJSON(w, http.StatusOK, s.rulesDoc())
}

// readJSON decodes a small JSON body; it must say it is JSON, which a form
// posted by another site cannot.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		fail(w, http.StatusUnsupportedMediaType, "send the rule as JSON with Content-Type: application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "not the JSON expected: %v", err)
		return false
	}
	return true
}

func (s *Server) apiAddRule(w http.ResponseWriter, r *http.Request) {
	if s.noRules(w) {
		return
	}
	var spec RuleSpec
	if !readJSON(w, r, &spec) {
		return
	}
	sw, err := s.rules.add(spec)
	if err != nil {
		fail(w, http.StatusBadRequest, "rule refused: %v", err)
		return
	}
	s.opts.Logger.Info("web UI: rule put in force", "rule", sw.Text)
	writeJSON(w, http.StatusCreated, sw)
}

func (s *Server) apiDeleteRule(w http.ResponseWriter, r *http.Request) {
	if s.noRules(w) {
		return
	}
	p := r.PathValue("id")
	if p == "" {
		p = r.URL.Query().Get("id")
	}
	id, err := strconv.ParseInt(p, 10, 64)
	if err != nil {
		fail(w, http.StatusBadRequest, "rule %q: give a rule's id, as GET /api/rules lists them", p)
		return
	}
	if !s.rules.remove(id) {
		fail(w, http.StatusNotFound, "no rule %d: GET /api/rules lists them", id)
		return
	}
	writeJSON(w, http.StatusOK, s.rulesDoc())
}

// markers lists a session's markers.
func (s *Server) markersOf(ctx context.Context, sess Session) ([]Marker, error) {
	if s.opts.Store == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return append([]Marker(nil), s.markers...), nil
	}
	return s.opts.Store.Markers(ctx, sess.ID)
}

func (s *Server) apiMarkers(w http.ResponseWriter, r *http.Request) {
	sess, x, err := s.session(r.Context(), r)
	if err != nil {
		sessionFailed(w, err)
		return
	}
	ms, err := s.markersOf(r.Context(), sess)
	if err != nil {
		fail(w, http.StatusInternalServerError, "read markers: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, x.groups(ms))
}

// MarkerSpec is POST /api/markers.
type MarkerSpec struct {
	Label string `json:"label"`
	Note  string `json:"note,omitempty"`
}

func (s *Server) apiAddMarker(w http.ResponseWriter, r *http.Request) {
	var spec MarkerSpec
	if !readJSON(w, r, &spec) {
		return
	}
	m, err := s.addMarker(r.Context(), spec)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, ErrReadOnly) || errors.Is(err, errNoLive) {
			status = http.StatusConflict
		}
		fail(w, status, "%v", err)
		return
	}
	writeJSON(w, http.StatusCreated, m)
}

var errNoLive = errors.New("nothing is being captured: markers are set while phonehome run captures")

func (s *Server) addMarker(ctx context.Context, spec MarkerSpec) (Marker, error) {
	if s.live == nil {
		return Marker{}, errNoLive
	}
	label := strings.TrimSpace(spec.Label)
	if label == "" {
		label = "marker"
	}
	if len(label) > 200 || len(spec.Note) > 4000 {
		return Marker{}, errors.New("a marker's label is at most 200 bytes and its note 4000")
	}
	m := Marker{Session: s.opts.LiveSession.ID, Time: s.opts.Now(), Label: label, Note: spec.Note}
	if s.opts.Store == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		m.ID = int64(len(s.markers) + 1)
		s.markers = append(s.markers, m)
		return m, nil
	}
	return s.opts.Store.AddMarker(ctx, m)
}

var errNoWireGuard = errors.New("no WireGuard server runs: start phonehome run --wireguard")

func (s *Server) apiPeers(w http.ResponseWriter, r *http.Request) {
	if s.opts.WireGuard == nil {
		fail(w, http.StatusNotFound, "%v", errNoWireGuard)
		return
	}
	peers, err := s.opts.WireGuard.Peers()
	if err != nil {
		fail(w, http.StatusInternalServerError, "list the peers: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, peers)
}

// PeerSpec is POST /api/wireguard/peers.
type PeerSpec struct {
	Name string `json:"name"`
}

// NewPeer answers POST /api/wireguard/peers: the configuration, as text and
// as a QR code (a PNG data URL) for the WireGuard app to scan.
type NewPeer struct {
	Name string `json:"name"`
	Conf string `json:"conf"`
	QR   string `json:"qr_png"`
}

func (s *Server) apiAddPeer(w http.ResponseWriter, r *http.Request) {
	if s.opts.WireGuard == nil {
		fail(w, http.StatusNotFound, "%v", errNoWireGuard)
		return
	}
	var spec PeerSpec
	if !readJSON(w, r, &spec) {
		return
	}
	name := strings.TrimSpace(spec.Name)
	conf, err := s.opts.WireGuard.AddPeer(name)
	if err != nil {
		fail(w, http.StatusBadRequest, "peer not added: %v", err)
		return
	}
	png, err := qrcode.Encode(conf, qrcode.Medium, 384)
	if err != nil {
		fail(w, http.StatusInternalServerError, "the QR code: %v", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store") // it holds the peer's private key
	writeJSON(w, http.StatusCreated, NewPeer{Name: name, Conf: conf, QR: "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)})
}
