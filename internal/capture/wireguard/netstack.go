package wireguard

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// MTU of the tunnel: what WireGuard leaves of a 1500-byte link.
const MTU = 1420

const nicID = 1

// netTun is the tun.Device wireguard-go reads and writes: instead of a
// kernel interface, decrypted packets go into a gVisor stack, and what the
// stack sends goes back to the peers. The stack is promiscuous (it accepts
// packets to any address) and spoofs (it answers from any address), so a
// connection to anywhere ends in phonehome, with its destination known.
type netTun struct {
	ep     *channel.Endpoint
	stack  *stack.Stack
	events chan tun.Event
	ctx    context.Context // ends at Close: a blocked Read returns
	cancel context.CancelFunc

	closeOnce sync.Once
}

func newNetTun() (*netTun, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
		HandleLocal:        false,
	})
	ctx, cancel := context.WithCancel(context.Background())
	t := &netTun{ep: channel.New(1024, MTU, ""), stack: s, events: make(chan tun.Event, 1), ctx: ctx, cancel: cancel}
	fail := func(what string, err tcpip.Error) (*netTun, error) {
		t.Close()
		return nil, fmt.Errorf("network stack: %s: %s", what, err)
	}
	// SACK and larger buffers: a phone's downloads are what this carries most
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fail("enable SACK", err)
	}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); err != nil {
		return fail("set receive buffers", err)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); err != nil {
		return fail("set send buffers", err)
	}
	if err := s.CreateNIC(nicID, t.ep); err != nil {
		return fail("create the interface", err)
	}
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		return fail("promiscuous mode", err)
	}
	if err := s.SetSpoofing(nicID, true); err != nil {
		return fail("spoofing", err)
	}
	for _, a := range []netip.Addr{Server4, Server6} {
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix()}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			return fail("add "+a.String(), err)
		}
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}, {Destination: header.IPv6EmptySubnet, NIC: nicID}})
	t.events <- tun.EventUp
	return t, nil
}

func (t *netTun) File() *os.File           { return nil }
func (t *netTun) MTU() (int, error)        { return MTU, nil }
func (t *netTun) Name() (string, error)    { return "phonehome", nil }
func (t *netTun) Events() <-chan tun.Event { return t.events }
func (t *netTun) BatchSize() int           { return 32 }

// Read hands wireguard-go what the stack sends: it waits for one packet,
// then takes what else is queued, up to len(bufs).
func (t *netTun) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	pkt := t.ep.ReadContext(t.ctx)
	if pkt == nil {
		return 0, os.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copyPacket(bufs[n][offset:], pkt)
		pkt.DecRef()
		n++
		if n == len(bufs) {
			return n, nil
		}
		if pkt = t.ep.Read(); pkt == nil {
			return n, nil
		}
	}
}

func copyPacket(dst []byte, pkt *stack.PacketBuffer) int {
	n := 0
	for _, s := range pkt.AsSlices() {
		n += copy(dst[n:], s)
	}
	return n
}

// Write gives the stack packets that peers sent (decrypted).
func (t *netTun) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		pkt := b[offset:]
		if len(pkt) == 0 {
			continue
		}
		var proto tcpip.NetworkProtocolNumber
		switch pkt[0] >> 4 {
		case 4:
			proto = header.IPv4ProtocolNumber
		case 6:
			proto = header.IPv6ProtocolNumber
		default:
			return 0, syscall.EAFNOSUPPORT
		}
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
		t.ep.InjectInbound(proto, pb)
		pb.DecRef()
	}
	return len(bufs), nil
}

// Close stops the stack: its endpoints close, so connections being served
// end, and a blocked Read returns.
func (t *netTun) Close() error {
	t.cancel()
	t.stack.Close()
	t.ep.Close()
	t.stack.Wait()
	t.closeOnce.Do(func() { close(t.events) }) // wireguard-go's event reader ends
	return nil
}
