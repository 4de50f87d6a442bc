package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newSpoofCmd(stdout, stderr io.Writer) *cobra.Command {
	var o lanOpts
	var ports string
	cmd := &cobra.Command{
		Use:   "spoof --target IP",
		Short: "Put this machine between a device and its router (ARP spoofing), nothing else",
		Long: `Tell a device on the LAN that this machine is its router, and the router that
this machine is the device (ARP spoofing, re-sent every 1.5 s), with IP
forwarding on and ICMP redirects off, so that the device's traffic passes
through this machine: for running your own capture or proxy (tcpdump,
Wireshark, mitmproxy --mode transparent). --redirect PORT also sends the
device's TCP --ports to that local port with nftables.

Linux, root (or CAP_NET_ADMIN and CAP_NET_RAW). Ctrl-C or SIGTERM stops it: the
real addresses are announced again and every kernel change is undone; after a
crash, the next start of phonehome run --spoof or phonehome spoof undoes them.
phonehome run --spoof does all this and records what the device sends.`,
		Example: `  sudo phonehome spoof --target 192.168.1.23
  sudo phonehome spoof --target 192.168.1.23 --gateway 192.168.1.1 --iface wlan0 --redirect 8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.target == "" {
				return fmt.Errorf("spoof: name the device with --target IP (its address on this network)")
			}
			return spoofOnly(cmd.Context(), o, ports, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.target, "target", "", "the device to put behind this machine (IPv4 address on the LAN)")
	f.StringVar(&o.gateway, "gateway", "", "the router's address (default: the interface's default route)")
	f.StringVar(&o.iface, "iface", "", "the network interface (default: the one on the device's network)")
	f.IntVar(&o.redirect, "redirect", 0, "also redirect the device's TCP --ports to this local port (a transparent proxy of your own)")
	f.StringVar(&ports, "ports", "80,443", "with --redirect: the device's TCP ports to redirect")
	return cmd
}

// lanOpts are the flags that put this machine between a device and its router.
type lanOpts struct {
	target    string
	gateway   string
	iface     string
	redirect  int  // spoof command: also redirect the ports to this local port (0: only forward)
	allowQUIC bool // do not drop the device's UDP 443
}
