// Command phonehome shows what a phone, its apps and gadgets send home, and to whom.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

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
		Version:       buildVersion(),
	}
	root.SetVersionTemplate("phonehome {{.Version}}\n") // as phonehome version prints it
	root.Flags().BoolP("version", "v", false, "print the version of phonehome, as phonehome version does")
	root.AddCommand(newAnalyzeCmd(stdout, stderr), newStoreCmd(stdout, stderr), newRunCmd(stdout, stderr), newReportCmd(stdout, stderr), newDiffCmd(stdout, stderr), newExplainCmd(stdout, stderr), newSpoofCmd(stdout, stderr), newCACmd(stdout, stderr), newWireGuardCmd(stdout, stderr), newSessionsCmd(stdout), newUICmd(stdout, stderr), newVersionCmd(stdout))
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

// version, when set at build time with -ldflags "-X main.version=...", wins
// over the module version Go records.
var version = "dev"

// buildVersion describes this binary, as phonehome version and --version print it.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return describeBuild(bi, version)
}

// describeBuild says which phonehome bi is: the version (stamped, else the
// main module's), the commit it was built from, shortened, with "+dirty" when
// the tree had uncommitted changes, the commit's time and the Go release.
// go run, go test and -buildvcs=false record no commit: it says so.
func describeBuild(bi *debug.BuildInfo, stamped string) string {
	if bi == nil {
		if stamped == "" {
			stamped = "dev"
		}
		return stamped
	}
	v := stamped
	if v == "" || v == "dev" {
		v = strings.TrimSuffix(bi.Main.Version, "+dirty") // said on the commit
	}
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				at = t.UTC().Format("2006-01-02 15:04:05 UTC")
			}
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	var parts []string
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "+dirty"
		}
		parts = append(parts, "commit "+rev)
		if at != "" {
			parts = append(parts, at)
		}
	}
	if bi.GoVersion != "" {
		parts = append(parts, bi.GoVersion)
	}
	if rev == "" && v == "dev" {
		parts = append(parts, "no commit recorded: built by go run or go test, or with -buildvcs=false")
	}
	if len(parts) == 0 {
		return v
	}
	return v + " (" + strings.Join(parts, ", ") + ")"
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of phonehome",
		Long: `Print the version of phonehome: the release, the commit it was built from
("+dirty" when the tree had uncommitted changes) and its time, and the Go
release. phonehome --version prints the same. Include it when you report a
problem, together with the command you ran and what it printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(stdout, "phonehome", buildVersion())
			return err
		},
	}
}
