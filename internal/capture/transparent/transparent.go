// Package transparent accepts connections that the kernel redirected to
// phonehome (an nftables or iptables REDIRECT of a device's traffic) and hands
// each, with the destination the device meant, to the proxy.
package transparent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	"phonehome/internal/capture/proxy"
)

// Serve accepts redirected connections on ln until ctx ends. Connections
// whose original destination cannot be read (not redirected: someone dialled
// the listener itself) are closed.
func Serve(ctx context.Context, ln net.Listener, p *proxy.Proxy, onError func(error)) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		orig, err := OriginalDst(c)
		if err != nil || isSelf(orig, ln.Addr()) {
			if err != nil && onError != nil {
				onError(err)
			}
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.ServeIntercepted(ctx, c, orig)
		}()
	}
}

// isSelf reports whether orig is the listener itself: a connection that was
// not redirected, which would loop back here if relayed.
func isSelf(orig netip.AddrPort, local net.Addr) bool {
	la, err := netip.ParseAddrPort(local.String())
	return err == nil && orig.Port() == la.Port() && (orig.Addr().Unmap() == la.Addr().Unmap() || la.Addr().IsUnspecified())
}
