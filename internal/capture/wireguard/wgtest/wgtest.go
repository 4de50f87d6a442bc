// Package wgtest brings up a real WireGuard client for tests: wireguard-go
// in a network namespace, configured by wg setconf from the same text a
// phone's WireGuard app imports.
package wgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Skip skips the test unless it can run a WireGuard client: root,
// /dev/net/tun, wireguard-go, wg and ip.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and a wireguard-go client (CI runs as root)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun for the wireguard-go client")
	}
	for _, tool := range []string{"ip", "wireguard-go", "wg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: iproute2, wireguard-go, wireguard-tools)", tool)
		}
	}
}

// Client is wireguard-go running in a namespace.
type Client struct {
	cmd  *exec.Cmd
	out  *lockedBuf
	done chan struct{}
}

// lockedBuf is what wireguard-go prints, written by exec's copier.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Up starts wireguard-go as interface ifc in namespace ns and configures it
// from conf (wg-quick text): wg setconf takes the key and [Peer] lines, and
// the Address lines become the interface's addresses; all traffic (IPv4
// and IPv6) is routed into the tunnel, by halves more specific than any
// default route (which stays, for the endpoint), unless the configuration
// has a ListenPort (a server: its Address prefix is routed). The client
// stops when the test ends.
func Up(t testing.TB, ns, ifc, conf string) *Client {
	t.Helper()
	// what wg-quick strip leaves: wg itself reads no Address, DNS or MTU
	var wgConf, addrs []string
	server := false
	for _, line := range strings.Split(conf, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch strings.TrimSpace(k) {
		case "Address":
			addrs = strings.Split(v, ",")
		case "DNS", "MTU":
		case "ListenPort":
			server = true
			wgConf = append(wgConf, line)
		default:
			wgConf = append(wgConf, line)
		}
	}
	path := filepath.Join(t.TempDir(), ifc+".conf")
	if err := os.WriteFile(path, []byte(strings.Join(wgConf, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Client{out: &lockedBuf{}, done: make(chan struct{})}
	// -f keeps it in the foreground, so that it is ours to stop
	c.cmd = exec.Command("ip", "netns", "exec", ns, "wireguard-go", "-f", ifc)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.Stop)
	// the control socket is shared by all namespaces (hence names that differ)
	for i := 0; ; i++ {
		if _, err := os.Stat("/var/run/wireguard/" + ifc + ".sock"); err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("wireguard-go did not start: %s", c.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("wg", "setconf", ifc, path)
	for _, a := range addrs {
		run("ip", "addr", "add", strings.TrimSpace(a), "dev", ifc)
	}
	run("ip", "link", "set", ifc, "mtu", strconv.Itoa(1420), "up")
	if !server {
		for _, half := range []string{"0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1"} {
			run("ip", "route", "add", half, "dev", ifc)
		}
	}
	return c
}

// Stop stops wireguard-go; its interface goes with it.
func (c *Client) Stop() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// Log is what wireguard-go printed, for a failure message.
func (c *Client) Log() string { return c.out.String() }

// Name makes an interface name unique to this process, from a short tag.
func Name(tag string) string { return fmt.Sprintf("wg%s%d", tag, os.Getpid()%100000) }
