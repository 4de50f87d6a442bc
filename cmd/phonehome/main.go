// Command phonehome shows what a phone, its apps and gadgets send home, and to whom.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError carries an exit code for errors already explained to the user.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// run is the whole program with its environment passed in, so tests can call it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(stderr, "phonehome:", err)
	return 1
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "phonehome",
		Short: "See what your phone, apps and gadgets send home, and to whom",
		Long: `phonehome shows what a phone, its apps and gadgets send home, to whom, and
what it carries: identifiers, location, contacts, browsing and app usage.

Start with a capture you already have (pcap/pcapng from tcpdump, Wireshark or
PCAPdroid, a browser's HAR, or a mitmproxy flow file):

  phonehome analyze capture.pcapng
  phonehome analyze --example         # a phone session that ships with phonehome
  phonehome diff --example            # the same phone before and after opting out

Or watch a device live: through the proxy (phonehome run, then set the device's
proxy and install phonehome's certificate), or with nothing set up on it
(sudo phonehome run --spoof DEVICE-IP, Linux).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAnalyzeCmd(stdout, stderr), newRunCmd(stdout, stderr), newReportCmd(stdout, stderr), newDiffCmd(stdout, stderr), newSpoofCmd(stdout, stderr), newCACmd(stdout, stderr), newSessionsCmd(stdout), newVersionCmd(stdout))
	// --cpuprofile is for developers measuring the hot paths (see bench/).
	var profile string
	var stopProfile func()
	root.PersistentFlags().StringVar(&profile, "cpuprofile", "", "write a CPU profile to this file")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if profile == "" {
			return nil
		}
		fh, err := os.Create(profile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(fh); err != nil {
			fh.Close()
			return fmt.Errorf("cpuprofile: %w", err)
		}
		stopProfile = func() { pprof.StopCPUProfile(); fh.Close() }
		return nil
	}
	root.PersistentPostRun = func(cmd *cobra.Command, args []string) {
		if stopProfile != nil {
			stopProfile()
		}
	}
	return root
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of phonehome",
		Long:  "Print the version of phonehome. Include it when you report a problem, together with the command you ran and what it printed.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(stdout, "phonehome", version)
			return err
		},
	}
}
