package wireguard

import (
	"net"

	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

// dnsWriter answers a query that arrived through the tunnel, on the
// association it came by.
type dnsWriter struct{ c *gonet.UDPConn }

func (w *dnsWriter) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *dnsWriter) RemoteAddr() net.Addr { return w.c.RemoteAddr() }
func (w *dnsWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.c.Write(b)
	return err
}
func (w *dnsWriter) Write(b []byte) (int, error) { return w.c.Write(b) }
func (w *dnsWriter) Close() error                { return nil } // the association outlives one answer
func (w *dnsWriter) TsigStatus() error           { return nil }
func (w *dnsWriter) TsigTimersOnly(bool)         {}
func (w *dnsWriter) Hijack()                     {}

// parseQuery reads a DNS query; nil for anything else (answers, garbage),
// which is dropped.
func parseQuery(b []byte) *dns.Msg {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil || m.Response || len(m.Question) == 0 {
		return nil
	}
	return m
}
