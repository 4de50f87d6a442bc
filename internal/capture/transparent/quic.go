package transparent

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"phonehome/internal/capture/pcap"
	"phonehome/internal/flow"
)

// ServeQUIC receives the device's QUIC (UDP 443) redirected here and never
// answers it, so that apps fall back to TCP, which can be intercepted. Each
// attempt is recorded once a minute per device and server name (read from the
// Initial packet): which hosts tried QUIC.
func ServeQUIC(ctx context.Context, pc net.PacketConn, emit func(*flow.Flow)) error {
	go func() {
		<-ctx.Done()
		pc.Close()
	}()
	var tried QUICTries
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		client, _ := netip.ParseAddrPort(from.String())
		if f := tried.Add(client, "", buf[:n]); f != nil {
			emit(f)
		}
	}
}

// maxQUICSeen bounds the device and server names QUICTries remembers.
const maxQUICSeen = 4096

// QUICTries reads the QUIC datagrams a device sends (and that are dropped)
// and makes a flow of each attempt, once a minute per device and server
// name. The zero value is ready; it is safe for concurrent use.
type QUICTries struct {
	mu     sync.Mutex
	seen   map[string]time.Time
	hellos pcap.QUICHellos
}

// Add reads one datagram from client (device names it when the source
// knows it) and returns the flow to record when it completes a ClientHello
// not recorded in the last minute, else nil.
func (q *QUICTries) Add(client netip.AddrPort, device string, pkt []byte) *flow.Flow {
	q.mu.Lock()
	defer q.mu.Unlock()
	sni, complete := q.hellos.Add(client.String(), pkt)
	if !complete {
		return nil // not an Initial, or the rest of its ClientHello is still to come
	}
	who := device
	if who == "" {
		who = client.Addr().Unmap().String()
	}
	key := who + " " + sni
	now := time.Now()
	if last, ok := q.seen[key]; ok && now.Sub(last) <= time.Minute {
		return nil
	}
	if q.seen == nil {
		q.seen = map[string]time.Time{}
	}
	if len(q.seen) >= maxQUICSeen { // bounded whatever names a device makes up
		for k, t := range q.seen {
			if now.Sub(t) > time.Minute {
				delete(q.seen, k)
			}
		}
		if len(q.seen) >= maxQUICSeen {
			clear(q.seen) // a flood: some attempts are recorded twice, never more memory
		}
	}
	q.seen[key] = now
	f := &flow.Flow{Start: now, End: now, Host: sni, Transport: flow.TransportQUIC, Device: device,
		Client: flow.Endpoint{Addr: client.Addr().Unmap(), Port: client.Port()}, TLS: &flow.TLSInfo{SNI: sni}, BytesUp: int64(len(pkt))}
	f.Note(flow.NoteQUICDropped, "tried QUIC (UDP 443): dropped so that the app falls back to TCP, which phonehome can read")
	return f
}
