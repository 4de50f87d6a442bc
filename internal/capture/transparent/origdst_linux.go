//go:build linux

package transparent

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const soOriginalDst = 80 // SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST

// OriginalDst returns where a connection redirected by netfilter was going.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: %T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var out netip.AddrPort
	var opErr error
	err = raw.Control(func(fd uintptr) {
		var buf [28]byte // sockaddr_in6, the larger of the two
		size := uint32(len(buf))
		level := unix.SOL_IP
		local, _ := netip.ParseAddrPort(c.LocalAddr().String())
		if local.Addr().Is6() && !local.Addr().Is4In6() {
			level = unix.SOL_IPV6
		}
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), soOriginalDst,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			opErr = fmt.Errorf("original destination (was the connection redirected?): %w", errno)
			return
		}
		port := binary.BigEndian.Uint16(buf[2:4])
		switch binary.NativeEndian.Uint16(buf[0:2]) {
		case unix.AF_INET:
			out = netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), port)
		case unix.AF_INET6:
			out = netip.AddrPortFrom(netip.AddrFrom16([16]byte(buf[8:24])), port)
		default:
			opErr = fmt.Errorf("original destination: unknown address family")
		}
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return out, opErr
}
