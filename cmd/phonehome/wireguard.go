package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"phonehome/internal/capture/dnsproxy"
	"phonehome/internal/capture/proxy"
	"phonehome/internal/capture/wireguard"
	"phonehome/internal/certs"
	"phonehome/internal/web"
)

// wireguardDir is where the server key and the peers live: beside the CA.
func wireguardDir(configDir string) (string, error) {
	if configDir == "" {
		d, err := certs.DefaultDir()
		if err != nil {
			return "", err
		}
		configDir = d
	}
	return filepath.Join(configDir, "wireguard"), nil
}

func newWireGuardCmd(stdout, stderr io.Writer) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "wireguard",
		Short: "Manage the phones that join phonehome run --wireguard by QR code",
		Long: `A phone joins phonehome with the WireGuard app: phonehome wireguard add NAME
shows a QR code, the app scans it, and while phonehome run --wireguard runs,
everything the phone sends goes through phonehome and is recorded under NAME.
Nothing else is set up on the phone but phonehome's certificate (for HTTPS).

Each peer is a device name: the Android WireGuard app can limit a tunnel to
chosen apps, so one peer per app (or set of apps) tells apart what each sends.

The server's key and the peers are kept in the config directory
($XDG_CONFIG_HOME/phonehome/wireguard), readable by your user only. A running
phonehome picks up peers added or removed within a few seconds.`,
		Example: `  phonehome wireguard add pixel              # scan the QR code with the WireGuard app
  phonehome wireguard add tablet --endpoint 203.0.113.7:51820 --png tablet.png
  phonehome wireguard add laptop --conf > laptop.conf
  phonehome wireguard list
  phonehome wireguard remove tablet`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&dir, "config-dir", "", "keep keys and peers under this directory instead of the config directory (as run's --ca-dir)")
	var endpoint, png string
	var conf bool
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a peer and show its configuration as a QR code",
		Long: `Make a key pair and tunnel addresses (IPv4 and IPv6) for a new peer and show
the configuration the WireGuard app imports: a QR code on the terminal, the
plain text with --conf, a PNG image with --png. The configuration sends all
traffic into the tunnel (AllowedIPs 0.0.0.0/0, ::/0) and uses phonehome's
resolver inside it.

The endpoint is where the phone reaches this machine: its LAN address and
port 51820 unless --endpoint says otherwise (from outside the LAN, a
forwarded port on the router). The peer's private key is shown once and not
kept: to show the configuration again, remove the peer and add it anew.`,
		Example: `  phonehome wireguard add pixel
  phonehome wireguard add pixel --endpoint 192.168.1.10:51820 --png pixel.png`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := wireguardDir(dir)
			if err != nil {
				return err
			}
			c, where, err := addPeer(d, args[0], endpoint, wireguard.DefaultPort)
			if err != nil {
				return fmt.Errorf("wireguard add: %w", err)
			}
			return showPeer(c, where, conf, png, stdout, stderr)
		},
	}
	add.Flags().StringVar(&endpoint, "endpoint", "", "HOST:PORT the phone reaches phonehome at (default: this machine's LAN address, port 51820)")
	add.Flags().BoolVar(&conf, "conf", false, "print the configuration as text (as wg and the apps read it) instead of a QR code")
	add.Flags().StringVar(&png, "png", "", "also write the QR code to this PNG file")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := wireguardDir(dir)
			if err != nil {
				return err
			}
			peers, err := wireguard.LoadPeers(d)
			if err != nil {
				return err
			}
			if len(peers) == 0 {
				fmt.Fprintln(stderr, "no peers yet: add one with phonehome wireguard add NAME")
				return nil
			}
			w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tIPV4\tIPV6\tADDED\tPUBLIC KEY")
			for _, p := range peers {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.IPv4, p.IPv6, p.Added.Local().Format("2006-01-02 15:04"), p.PublicKey)
			}
			return w.Flush()
		},
	}
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a peer: its key is refused from then on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := wireguardDir(dir)
			if err != nil {
				return err
			}
			if err := wireguard.RemovePeer(d, args[0]); err != nil {
				return fmt.Errorf("wireguard remove: %w", err)
			}
			fmt.Fprintf(stderr, "removed %s: a running phonehome refuses its key within a few seconds\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

// addPeer adds a peer and makes its configuration; where says how the
// endpoint was chosen.
func addPeer(dir, name, endpoint string, port uint16) (wireguard.ClientConfig, string, error) {
	where := "as --endpoint gave it"
	if endpoint == "" {
		lan, err := wireguard.LANAddress()
		if err != nil {
			return wireguard.ClientConfig{}, "", err
		}
		endpoint = net.JoinHostPort(lan.String(), strconv.Itoa(int(port)))
		where = "this machine's LAN address; a phone elsewhere needs --endpoint"
	} else if _, _, err := net.SplitHostPort(endpoint); err != nil {
		return wireguard.ClientConfig{}, "", fmt.Errorf("--endpoint %q: write HOST:PORT, e.g. 192.168.1.10:51820", endpoint)
	}
	key, err := wireguard.ServerKey(dir, rand.Reader)
	if err != nil {
		return wireguard.ClientConfig{}, "", err
	}
	p, priv, err := wireguard.AddPeer(dir, name, rand.Reader, time.Now())
	if err != nil {
		return wireguard.ClientConfig{}, "", err
	}
	return wireguard.ClientConfig{PrivateKey: priv, Peer: p, ServerKey: key.Public(), Endpoint: endpoint}, where, nil
}

// showPeer prints a new peer's configuration: a QR code, or the text.
func showPeer(c wireguard.ClientConfig, where string, conf bool, png string, stdout, stderr io.Writer) error {
	if png != "" {
		if err := c.WritePNG(png, 768); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "peer %s: %s and %s in the tunnel; endpoint %s (%s)\n", c.Peer.Name, c.Peer.IPv4, c.Peer.IPv6, c.Endpoint, where)
	if png != "" {
		fmt.Fprintf(stderr, "QR code written to %s\n", png)
	}
	if conf {
		_, err := io.WriteString(stdout, c.String())
		return err
	}
	qr, err := c.QR()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\nScan it in the WireGuard app (+, Scan from QR code), then switch the tunnel on.\n", qr)
	return nil
}

// startWireGuard is run --wireguard: the server, beside the proxy and the
// resolver; with no peer yet, one named phone is made and its QR code shown.
func startWireGuard(ctx context.Context, o runOpts, popts proxy.Options, resolver *dnsproxy.Server, ui *uiPeers, stdout, stderr io.Writer) (func(), error) {
	dir, err := wireguardDir(o.caDir)
	if err != nil {
		return nil, err
	}
	srv, err := wireguard.New(wireguard.Options{Listen: o.wireguard, Dir: dir, Proxy: popts, DNS: resolver,
		AllowQUIC: o.lan.allowQUIC, ReachHost: o.wgReachHost})
	if err != nil {
		return nil, fmt.Errorf("run: --wireguard: %w", err)
	}
	fmt.Fprintf(stderr, "WireGuard on UDP port %d (server key %s); peers: %d\n", srv.Port(), srv.PublicKey(), len(srv.Peers()))
	if ui != nil {
		ui.port.Store(uint32(srv.Port())) // the port listened on, also when --wireguard asked for :0
	}
	if len(srv.Peers()) == 0 {
		c, where, err := addPeer(dir, "phone", "", srv.Port())
		if err != nil {
			srv.Close()
			return nil, fmt.Errorf("run: --wireguard: %w", err)
		}
		if err := showPeer(c, where, false, "", stdout, stderr); err != nil {
			srv.Close()
			return nil, err
		}
	}
	return runPart(ctx, srv.Run, srv.Close, "WireGuard", stderr), nil
}

// uiPeers gives the web UI the peers of run --wireguard: the peers file is
// the server's, which picks up a peer added here within seconds.
type uiPeers struct {
	dir  string
	port atomic.Uint32 // the server's, once it listens
}

// newUIPeers is nil (no WireGuard on the UI's pages) without --wireguard.
func newUIPeers(o runOpts) (*uiPeers, error) {
	if o.wireguard == "" {
		return nil, nil
	}
	dir, err := wireguardDir(o.caDir)
	if err != nil {
		return nil, err
	}
	return &uiPeers{dir: dir}, nil
}

// wireGuard is u as the web UI takes it: no interface holding a nil pointer.
func (u *uiPeers) wireGuard() web.WireGuardPeers {
	if u == nil {
		return nil
	}
	return u
}

func (u *uiPeers) Peers() ([]web.KnownDevice, error) {
	peers, err := wireguard.LoadPeers(u.dir)
	out := make([]web.KnownDevice, len(peers))
	for i, p := range peers {
		out[i] = web.KnownDevice{Name: p.Name, Addr: p.IPv4.String() + ", " + p.IPv6.String(), How: "WireGuard peer"}
	}
	return out, err
}

func (u *uiPeers) AddPeer(name string) (string, error) {
	port := uint16(u.port.Load())
	if port == 0 {
		return "", fmt.Errorf("the WireGuard server has not started yet: try again in a moment")
	}
	c, _, err := addPeer(u.dir, name, "", port)
	if err != nil {
		return "", err
	}
	return c.String(), nil
}
