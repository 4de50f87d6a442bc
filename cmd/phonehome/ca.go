package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"phonehome/internal/certs"
)

func newCACmd(stdout, stderr io.Writer) *cobra.Command {
	var pathOnly bool
	var dir string
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Show phonehome's certificate authority (created on first use)",
		Long: `Show where phonehome's certificate authority is and its fingerprint, creating it
on first use in the user's config directory ($XDG_CONFIG_HOME/phonehome). A
device that should be intercepted installs this certificate; its key never
leaves this machine and is readable by your user only.

Files: ca.pem and ca.crt (PEM), ca.der (DER), ca.key (the private key).`,
		Example: `  phonehome ca
  phonehome ca --path          # just the certificate's file, for scripts:
  curl --cacert "$(phonehome ca --path)" -x 127.0.0.1:8080 https://example.com/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				d, err := certs.DefaultDir()
				if err != nil {
					return err
				}
				dir = d
			}
			ca, created, err := certs.LoadOrCreate(dir, certs.Options{})
			if err != nil {
				return err
			}
			if pathOnly {
				_, err := fmt.Fprintln(stdout, ca.CertPath())
				return err
			}
			if created {
				fmt.Fprintln(stderr, "created a new certificate authority")
			}
			_, err = fmt.Fprintf(stdout, "CA certificate: %s\nSHA-256 fingerprint: %s\nValid until: %s\nSubject: %s\n",
				ca.CertPath(), ca.Fingerprint(), ca.Cert.NotAfter.UTC().Format("2006-01-02"), ca.Cert.Subject.CommonName)
			return err
		},
	}
	cmd.Flags().BoolVar(&pathOnly, "path", false, "print only the path of the CA certificate")
	cmd.Flags().StringVar(&dir, "dir", "", "use the CA in this directory instead of the config directory")
	return cmd
}
