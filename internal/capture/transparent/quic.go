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
	var mu sync.Mutex
	seen := map[string]time.Time{}
	var hellos pcap.QUICHellos
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		sni, complete := hellos.Add(from.String(), buf[:n])
		if !complete {
			continue // not an Initial, or the rest of its ClientHello is still to come
		}
		client, _ := netip.ParseAddrPort(from.String())
		key := client.Addr().String() + " " + sni
		now := time.Now()
		mu.Lock()
		last, ok := seen[key]
		if !ok || now.Sub(last) > time.Minute {
			seen[key] = now
		}
		mu.Unlock()
		if ok && now.Sub(last) <= time.Minute {
			continue
		}
		f := &flow.Flow{Start: now, End: now, Host: sni, Transport: flow.TransportQUIC,
			Client: flow.Endpoint{Addr: client.Addr().Unmap(), Port: client.Port()}, TLS: &flow.TLSInfo{SNI: sni}, BytesUp: int64(n)}
		f.Note(flow.NoteQUICDropped, "tried QUIC (UDP 443): dropped so that the app falls back to TCP, which phonehome can read")
		emit(f)
	}
}
