package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A client that does not take phonehome's certificate — an app that pins
// its server's, or a device without phonehome's CA — ends the handshake
// with an alert about the certificate. Such a client gets its server's own
// certificate (the tunnel is relayed untouched) once it refused
// PinRefusals times within PinWindow, for that host and that client address
// only, until PinCooldown has passed; then interception is tried again. A
// client that hangs up, resets, stays silent or sends what TLS rejects
// tells nothing about the certificate, and never counts: one refusal, or a
// dropped connection, must not turn decryption off for a host.

// Defaults of the pinning rule (see Options).
const (
	defaultPinRefusals = 2
	defaultPinWindow   = 10 * time.Minute
	defaultPinCooldown = 10 * time.Minute
	// maxPinPairs bounds what is remembered (see makeRoom).
	maxPinPairs = 10_000
)

// handshakeEnd is how a client's TLS handshake with phonehome failed.
type handshakeEnd uint8

const (
	// endRejected: phonehome's side gave up on what the client sent (a
	// ClientHello TLS rejects, no version or cipher in common) or could not
	// go on (a certificate could not be minted).
	endRejected handshakeEnd = iota
	// endRefused: the client ended it with an alert about the certificate.
	endRefused
	// endAlert: the client ended it with an alert about something else.
	endAlert
	// endDropped: the client went away without a word (EOF, a reset).
	endDropped
	// endTimeout: the client did not finish in time.
	endTimeout
)

// certAlerts are the alerts a client sends about the certificate it was
// shown (RFC 8446 §6.2, RFC 5246 §7.2.2): bad_certificate (Go, BoringSSL),
// unknown_ca (OpenSSL, curl), certificate_unknown (Android's Conscrypt),
// and their kin.
var certAlerts = [...]tls.AlertError{
	42,  // bad_certificate
	43,  // unsupported_certificate
	44,  // certificate_revoked
	45,  // certificate_expired
	46,  // certificate_unknown
	48,  // unknown_ca
	49,  // access_denied
	113, // bad_certificate_status_response
}

// classifyHandshake says how a server-side handshake failed, and the alert
// the client sent, if it sent one: in the error, or in clear (tap).
func classifyHandshake(err error, tap *alertTap) (handshakeEnd, tls.AlertError) {
	a, ok := remoteAlert(err)
	if !ok && tap != nil && tap.got {
		a, ok = tap.seen, true
	}
	if ok {
		for _, c := range certAlerts {
			if a == c {
				return endRefused, a
			}
		}
		return endAlert, a
	}
	switch {
	case isTimeout(err):
		return endTimeout, 0
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return endDropped, 0
	}
	return endRejected, 0
}

// remoteAlert returns the alert the peer ended a handshake with. crypto/tls
// reports one as a net.OpError "remote error" around a value of its own
// unexported alert type, whose text is the same as tls.AlertError's of the
// same code: the code is found by that text, which crypto/tls makes from a
// single table.
func remoteAlert(err error) (tls.AlertError, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0, false
	}
	text := op.Err.Error()
	for c := 0; c < 256; c++ {
		if tls.AlertError(c).Error() == text {
			return tls.AlertError(c), true
		}
	}
	return 0, false
}

// alertName is an alert's name without crypto/tls's prefix.
func alertName(a tls.AlertError) string { return strings.TrimPrefix(a.Error(), "tls: ") }

// pinBook keeps, per client address and host, the refusals counted and the
// decisions to pass through. It is safe for concurrent use.
type pinBook struct {
	refusals int
	window   time.Duration
	cooldown time.Duration
	mu       sync.Mutex
	pairs    map[pinKey]*pinState
}

type pinKey struct {
	client netip.Addr
	host   string
}

type pinState struct {
	seen  []time.Time // refusals within the window, oldest first
	until time.Time   // passed through until then; zero: intercepted
	count int         // refusals that decided
	alert tls.AlertError
}

func newPinBook(refusals int, window, cooldown time.Duration) *pinBook {
	return &pinBook{refusals: refusals, window: window, cooldown: cooldown, pairs: map[pinKey]*pinState{}}
}

func pinKeyOf(client netip.Addr, host string) pinKey {
	return pinKey{client: client.Unmap(), host: strings.ToLower(strings.TrimSuffix(host, "."))}
}

// passed reports whether host is passed through for client at now, and if
// so, the decision's state (a copy).
func (b *pinBook) passed(client netip.Addr, host string, now time.Time) (pinState, bool) {
	k := pinKeyOf(client, host)
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.pairs[k]
	if s == nil || s.until.IsZero() {
		return pinState{}, false
	}
	if !now.Before(s.until) {
		delete(b.pairs, k) // the cool-down is over: intercepted again, counted afresh
		return pinState{}, false
	}
	return pinState{until: s.until, count: s.count, alert: s.alert}, true
}

// refused records a refusal by client of phonehome's certificate for host
// at now. It returns the refusals counted within the window, this one
// included, and, when this one decides, until when the host is passed
// through for the client (zero otherwise).
func (b *pinBook) refused(client netip.Addr, host string, now time.Time, alert tls.AlertError) (count int, until time.Time) {
	k := pinKeyOf(client, host)
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.pairs[k]
	if s != nil && !s.until.IsZero() {
		if now.Before(s.until) {
			return s.count, time.Time{} // decided already (a handshake begun before the decision)
		}
		s = nil
	}
	if s == nil {
		b.makeRoom(now)
		s = &pinState{}
		b.pairs[k] = s
	}
	s.prune(now, b.window)
	s.seen = append(s.seen, now)
	count = len(s.seen)
	if count < b.refusals {
		return count, time.Time{}
	}
	s.seen, s.count, s.alert = nil, count, alert
	s.until = now.Add(b.cooldown)
	return count, s.until
}

// prune drops the refusals older than the window.
func (s *pinState) prune(now time.Time, window time.Duration) {
	i := 0
	for i < len(s.seen) && now.Sub(s.seen[i]) >= window {
		i++
	}
	s.seen = s.seen[i:]
}

// makeRoom keeps the book within maxPinPairs. When it is full, what has
// expired goes, then (a flood of names) pairs still counting, then any,
// down to three quarters: the sweep is paid once per many refusals.
func (b *pinBook) makeRoom(now time.Time) {
	if len(b.pairs) < maxPinPairs {
		return
	}
	for k, s := range b.pairs {
		s.prune(now, b.window)
		if len(s.seen) == 0 && !now.Before(s.until) {
			delete(b.pairs, k)
		}
	}
	target := maxPinPairs * 3 / 4
	for _, counting := range []bool{true, false} {
		for k, s := range b.pairs {
			if len(b.pairs) <= target {
				return
			}
			if !counting || s.until.IsZero() {
				delete(b.pairs, k)
			}
		}
	}
}

// alertTap watches the records a client sends during its handshake for an
// alert sent in clear. OpenSSL (curl, the native code of many apps) sends
// the alert that refuses a certificate in TLS 1.3 before it switched to its
// handshake keys, unencrypted: crypto/tls, expecting an encrypted record,
// reports a bad record MAC and never the alert. Once the handshake is over
// (off), bytes pass unwatched.
type alertTap struct {
	r     io.Reader
	off   bool
	hdr   [5]byte // the record header being read
	nhdr  int
	left  int  // bytes of the current record's payload still to come
	alert bool // the current record is an alert in clear (two bytes)
	body  [2]byte
	nbody int
	seen  tls.AlertError // the last alert seen in clear
	got   bool
}

func (t *alertTap) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if !t.off {
		t.watch(b[:n])
	}
	return n, err
}

// watch follows the record stream through b.
func (t *alertTap) watch(b []byte) {
	for len(b) > 0 {
		if t.nhdr < len(t.hdr) {
			k := copy(t.hdr[t.nhdr:], b)
			t.nhdr += k
			b = b[k:]
			if t.nhdr < len(t.hdr) {
				return
			}
			t.left = int(t.hdr[3])<<8 | int(t.hdr[4])
			t.alert, t.nbody = t.hdr[0] == 21 && t.left == 2, 0
		}
		k := min(len(b), t.left)
		if t.alert {
			t.nbody += copy(t.body[t.nbody:], b[:k])
		}
		t.left -= k
		b = b[k:]
		if t.left == 0 {
			t.nhdr = 0
			if t.alert {
				t.seen, t.got = tls.AlertError(t.body[1]), true
			}
		}
	}
}
