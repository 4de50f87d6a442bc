// Package web provides phonehome's web UI: a JSON API, a Server-Sent-Events
// stream of flows from the live broker, pages rendered from embedded
// templates (no external assets: it works offline), and the policy switches
// that change the rules in force without a restart.
//
// Flows are hostile input: every page is rendered by html/template, and the
// scripts build the live list with textContent only.
package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"phonehome/internal/live"
)

// Options configure a Server.
type Options struct {
	// Addr is where to listen ("127.0.0.1:8081"). Anywhere but loopback, a
	// token is required (Token, or a random one).
	Addr string
	// Store holds the sessions; nil serves the live session only, from memory.
	Store Store
	// Live is the running capture's broker; nil when nothing captures
	// (phonehome ui).
	Live *live.Broker
	// LiveSession is the session the capture writes (with Live).
	LiveSession Session
	// Policy lets the switches change the rules; nil turns them off.
	Policy *Policy
	// CAPEM is the CA certificate the set-up page offers; CAFingerprint its SHA-256.
	CAPEM         []byte
	CAFingerprint string
	// Devices are the devices the capture knows before they send anything
	// (a spoofed device, WireGuard peers), for the Devices page.
	Devices []KnownDevice
	// WireGuard lists and adds the WireGuard server's peers, for the Devices
	// and set-up pages; nil when the capture runs no WireGuard server.
	WireGuard WireGuardPeers
	// ProxyAddr is where devices point their proxy setting, for the set-up page.
	ProxyAddr string
	// Token, when set, is required of every request (else a random one is
	// made when Addr is not loopback).
	Token  string
	Logger *slog.Logger
	Now    func() time.Time
}

// Server is the web UI. New listens; Run serves until ctx ends or Close.
type Server struct {
	opts     Options
	ln       net.Listener
	srv      *http.Server
	token    string
	loop     bool // bound to loopback: Host headers must name it too
	mux      *http.ServeMux
	pages    *pages
	rules    *Policy
	live     *index
	mu       sync.Mutex
	indexes  map[int64]*index // stored sessions, by id, as opened
	loading  map[int64]chan struct{}
	markers  []Marker  // without a store: the live session's, in memory
	sessList []Session // the store's sessions as of sessAt
	sessAt   time.Time
	feed     *live.Subscription
	bg       sync.WaitGroup // reads of stored sessions in the background
	closing  bool           // Close began: no more background reads (under mu)
	ctx      context.Context
	cancel   context.CancelFunc
}

// New listens on opts.Addr. The caller must Close the server.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pg, err := newPages()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("web UI: listen on %s: %w (is another phonehome serving its UI there? choose another address with --ui)", opts.Addr, err)
	}
	s := &Server{opts: opts, ln: ln, pages: pg, token: opts.Token, indexes: map[int64]*index{}, loading: map[int64]chan struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && ap.Addr().IsLoopback() {
		s.loop = true
	}
	if !s.loop && s.token == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b) // crypto/rand does not fail
		s.token = hex.EncodeToString(b)
	}
	s.rules = opts.Policy
	if opts.Live != nil {
		s.live = newIndex()
		s.live.maxRows = liveRows
		// subscribed now, so no flow that completes after New is missed
		s.feed = s.subscribeFeed()
	}
	s.mux = http.NewServeMux()
	s.routes()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL is the address to open, with the token when one is required.
func (s *Server) URL() string {
	host := s.ln.Addr().String()
	if ap, err := netip.ParseAddrPort(host); err == nil && ap.Addr().IsUnspecified() {
		// every address: this machine's own is one of them
		host = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port()).String()
	}
	u := "http://" + host + "/"
	if s.token != "" {
		u += "?token=" + s.token
	}
	return u
}

// Run serves until ctx ends or Close is called, feeding the live session's
// index from the broker meanwhile.
func (s *Server) Run(ctx context.Context) error {
	go func() {
		select {
		case <-ctx.Done():
		case <-s.ctx.Done():
		}
		s.srv.Close()
	}()
	if s.feed != nil {
		go s.runFeed()
	} else if s.opts.Store != nil {
		s.bg.Go(s.preload)
	}
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// runFeed adds the live flows to the live index. Should it fall behind so far
// that the broker drops it, it subscribes again (the store still has every
// flow; the live list has a gap, said in the log).
func (s *Server) runFeed() {
	for {
		s.mu.Lock()
		sub := s.feed
		s.mu.Unlock()
		for ev := range sub.C() {
			s.live.add(ev.Flow, true)
		}
		err := sub.Err()
		if err == nil || s.ctx.Err() != nil {
			return
		}
		s.opts.Logger.Warn("web UI: the live index fell behind and missed flows; they are in the store", "err", err)
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			return
		}
		s.feed = s.subscribeFeed()
		s.mu.Unlock()
	}
}

func (s *Server) subscribeFeed() *live.Subscription {
	return s.opts.Live.Subscribe("web UI index", 1<<16, func(ev live.Event) bool { return ev.Kind == live.EventFlow })
}

// Close stops serving; streams end, their subscriptions close.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true // no background read starts after this
	s.cancel()
	if s.feed != nil {
		s.feed.Close()
	}
	s.mu.Unlock()
	err := s.srv.Close()
	s.bg.Wait() // they stop at s.ctx; the store is closed after this
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// WireGuardPeers are the peers of phonehome's WireGuard server.
type WireGuardPeers interface {
	// Peers lists the peers as devices: their names and tunnel addresses.
	Peers() ([]KnownDevice, error)
	// AddPeer makes a peer and returns the configuration its phone imports
	// (the WireGuard app scans it as a QR code). It holds the peer's private
	// key, which phonehome does not keep: it can be shown only now.
	AddPeer(name string) (conf string, err error)
}

// known is the devices the capture was set up for: those of Options and
// the WireGuard peers.
func (s *Server) known() []KnownDevice {
	out := s.opts.Devices
	if s.opts.WireGuard != nil {
		if peers, err := s.opts.WireGuard.Peers(); err == nil {
			out = append(slices.Clip(out), peers...)
		} else if s.opts.Logger != nil {
			s.opts.Logger.Warn("list the WireGuard peers", "err", err)
		}
	}
	return out
}

// liveRows bounds the rows of the live session's lists: about 0.5 KB each,
// so some 10 MB whatever the run's length (hours of a phone's requests; a
// capture under load must not hold its flows twice). The whole session is
// in the store, for phonehome ui and the reports.
const liveRows = 20000

// KnownDevice is a device the capture was set up for.
type KnownDevice struct {
	Name string `json:"name"` // as flows name it (Flow.DeviceName): a peer's name or the address
	Addr string `json:"addr"`
	How  string `json:"how"` // "ARP spoofing", "WireGuard peer", ...
}

const tokenCookie = "phonehome_token"

// ServeHTTP checks who asks before any handler runs: the Host (a page of
// another site must not reach a loopback UI by DNS rebinding), the token
// when one is required, and for calls that change something, the Origin.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	if s.loop && !loopbackHost(r.Host) {
		http.Error(w, "this UI answers only to its loopback address: open http://"+s.ln.Addr().String()+"/", http.StatusMisdirectedRequest)
		return
	}
	if s.token != "" {
		if t := r.URL.Query().Get("token"); t != "" && s.tokenOK(t) {
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/api/") {
				q := r.URL.Query()
				q.Del("token")
				// the token leaves the address bar; to this UI's own path only
				// ("//other.example/" would be another site)
				to := "/" + strings.TrimLeft(r.URL.EscapedPath(), "/\\")
				if enc := q.Encode(); enc != "" {
					to += "?" + enc
				}
				http.Redirect(w, r, to, http.StatusSeeOther)
				return
			}
		} else if !s.requestHasToken(r) {
			http.Error(w, "this UI needs the token phonehome printed when it started: open the address it printed, with ?token=", http.StatusUnauthorized)
			return
		}
	}
	// Another site may link to a page (a navigation), but not make the
	// browser fetch from the UI behind the user's back: an image or a
	// script pointing at an export would make phonehome read whole sessions.
	if site := r.Header.Get("Sec-Fetch-Site"); (site == "cross-site" || site == "same-site") &&
		(r.Header.Get("Sec-Fetch-Mode") != "navigate" || strings.HasPrefix(r.URL.Path, "/api/") || strings.HasSuffix(r.URL.Path, ".zip")) {
		http.Error(w, "refused: a page of another site may not fetch from phonehome's UI", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			http.Error(w, "refused: a page of another site ("+o+") may not change phonehome's rules", http.StatusForbidden)
			return
		}
		if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
			http.Error(w, "refused: a request from another site may not change phonehome's rules", http.StatusForbidden)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) tokenOK(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

func (s *Server) requestHasToken(r *http.Request) bool {
	if t := r.Header.Get("X-Phonehome-Token"); t != "" {
		return s.tokenOK(t)
	}
	if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return s.tokenOK(a)
	}
	if c, err := r.Cookie(tokenCookie); err == nil {
		return s.tokenOK(c.Value)
	}
	return false
}

// loopbackHost reports whether a Host header names a loopback address or localhost.
func loopbackHost(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}
