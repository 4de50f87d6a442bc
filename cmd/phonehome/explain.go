package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"phonehome/internal/capture"
	"phonehome/internal/detect"
	"phonehome/internal/flow"
)

func newExplainCmd(stdout, stderr io.Writer) *cobra.Command {
	var o analyzeOpts // the same engine options, read the same way
	cmd := &cobra.Command{
		Use:   "explain [flags] FILE NUMBER | --db FILE ID",
		Short: "Show why one flow has the findings it has",
		Long: `Show one flow the way the detector saw it: every value its request decoded
into, each with its path through the layers (query, form, JSON, base64, gzip,
protobuf, ...), and for each finding the evidence that decided it (the field's
name, the value's shape and check digits, the endpoint table, a value that
came back, the profile) and its confidence. A description of the device held
back because nothing identifying travels beside it is shown as held back.

A flow is named by its number in a capture file (the "flow" of analyze
--format json: flows are numbered from 1 in the order they are read), or by
its id in a database written by run or analyze --db. The flows before it are
inspected first, so that evidence across flows is the same as in analyze.`,
		Example: `  phonehome explain session.har 12
  phonehome explain --profile me.yaml capture.pcap 3
  phonehome explain --db phone.db 4711
  phonehome explain --db phone.db --session before-opt-out --format json 17`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return explain(cmd, o, args, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "read the flow from this database (by its id) instead of a capture file (by its number)")
	f.StringVar(&o.session, "session", "", "with --db: the session (default: the newest)")
	f.StringVar(&o.format, "format", "text", "output format: text or json (one JSON object)")
	f.StringVar(&o.profile, "profile", "", "YAML or JSON file of your own values to find in every form, as for analyze")
	f.StringVar(&o.region, "phone-region", "", "two-letter country for phone numbers written without a country code")
	f.StringArrayVar(&o.trackers, "trackers", nil, "also load this tracker list, as for analyze; repeatable")
	f.IntVar(&o.maxBody, "max-body", 1<<20, "bytes of each request body kept for analysis")
	return cmd
}

func explain(cmd *cobra.Command, o analyzeOpts, args []string, stdout, stderr io.Writer) error {
	if o.format != "text" && o.format != "json" {
		return fmt.Errorf("explain: unknown --format %q: use text or json", o.format)
	}
	want := len(args) == 2
	if o.db != "" {
		want = len(args) == 1
	}
	if !want {
		return errors.New("explain: name a capture file and a flow number (phonehome explain session.har 12), or --db FILE and a flow id (see phonehome explain --help)")
	}
	n, err := strconv.ParseInt(args[len(args)-1], 10, 64)
	if err != nil || n < 1 {
		return fmt.Errorf("explain: %q is not a flow number: give a whole number from 1 (the \"flow\" of analyze --format json)", args[len(args)-1])
	}
	engine, err := newEngine(o, stderr)
	if err != nil {
		return errors.New(strings.Replace(err.Error(), "analyze:", "explain:", 1))
	}
	var found *flow.Flow
	var x detect.Explanation
	// Every flow before the one asked for is inspected, as analyze would,
	// so that what is learned across flows is the same.
	look := func(f *flow.Flow, number int64) bool {
		if number == n {
			x = engine.Explain(f)
			found = f
			return true
		}
		engine.Inspect(f)
		return false
	}
	if o.db != "" {
		ctx := cmd.Context()
		st, sess, err := openStored(ctx, "explain", o.db, o.session)
		if err != nil {
			return err
		}
		defer st.Close()
		stop := errors.New("found")
		err = st.Flows(ctx, sess, func(f *flow.Flow) error {
			if look(f, f.ID) {
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			return fmt.Errorf("explain: read %s: %w", o.db, err)
		}
		if found == nil {
			return fmt.Errorf("explain: session %q of %s has no flow with id %d: phonehome report --db %s --flows --format json lists the ids", sess.Name, o.db, n, o.db)
		}
	} else {
		path := args[0]
		number := int64(0)
		_, err := capture.ReadFile(path, capture.Options{MaxBody: o.maxBody}, func(f *flow.Flow) {
			number++
			if found == nil {
				look(f, number)
			}
		})
		if found == nil {
			if err != nil {
				return fmt.Errorf("explain: %w", err)
			}
			return fmt.Errorf("explain: %s has %d flows, not %d: number them with phonehome analyze --format json %s", path, number, n, path)
		}
	}
	if o.format == "json" {
		return writeExplainJSON(stdout, found, x)
	}
	return writeExplainText(stdout, found, x)
}

func writeExplainText(w io.Writer, f *flow.Flow, x detect.Explanation) error {
	var b strings.Builder
	fmt.Fprintf(&b, "flow %s\n", flowTitle(f))
	if d := f.Dest; d.Owner != "" || d.Category != "" {
		fmt.Fprintf(&b, "  to: %s, %s", d.Owner, d.Category)
		if d.SDK != "" {
			fmt.Fprintf(&b, " (%s)", d.SDK)
		}
		b.WriteString("\n")
	}
	if f.App != "" {
		fmt.Fprintf(&b, "  app: %s\n", f.App)
	}
	fmt.Fprintf(&b, "\ndecoded: %d values\n", len(x.Values))
	for _, v := range x.Values {
		text := v.Text
		if len(text) > 120 {
			text = text[:119] + "…"
		}
		fmt.Fprintf(&b, "  %s = %s\n", v.Path, text)
	}
	for _, o := range x.Opaque {
		fmt.Fprintf(&b, "  %s: %d bytes nobody can read (%.1f bits/byte)\n", o.Path, o.Size, o.Entropy)
	}
	for _, l := range x.Limits {
		fmt.Fprintf(&b, "  limit: %s\n", l)
	}
	fmt.Fprintf(&b, "\nfindings: %d\n", len(x.Evidence))
	for _, e := range x.Evidence {
		mark := ""
		if !e.Reported {
			mark = " (held back)"
		}
		fmt.Fprintf(&b, "  %s = %s%s\n    at %s\n    by %s, confidence %.2f: %s\n", e.Finding.Kind, e.Finding.Value, mark,
			e.Finding.Path, e.Finding.Method, e.Finding.Confidence, e.Why)
	}
	if len(f.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range f.Notes {
			fmt.Fprintf(&b, "  %s: %s\n", n.Code, n.Text)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func flowTitle(f *flow.Flow) string {
	if f.Request != nil {
		return f.Request.Method + " " + f.Request.URL
	}
	return f.HostOrAddr()
}

func writeExplainJSON(w io.Writer, f *flow.Flow, x detect.Explanation) error {
	type value struct {
		Path    string `json:"path"`
		Key     string `json:"key,omitempty"`
		Text    string `json:"value"`
		Numeric bool   `json:"numeric,omitempty"`
	}
	type finding struct {
		Kind       flow.Kind   `json:"kind"`
		Value      string      `json:"value"`
		Path       string      `json:"path"`
		Method     flow.Method `json:"method_found"`
		Confidence float64     `json:"confidence"`
		Reported   bool        `json:"reported"`
		Why        string      `json:"evidence"`
	}
	out := struct {
		Flow     string           `json:"flow"`
		App      string           `json:"app,omitempty"`
		Values   []value          `json:"values"`
		Findings []finding        `json:"findings"`
		Notes    []flow.Note      `json:"notes,omitempty"`
		Limits   []string         `json:"limits,omitempty"`
		Dest     flow.Destination `json:"destination"`
	}{Flow: flowTitle(f), App: f.App, Notes: f.Notes, Limits: x.Limits, Dest: f.Dest, Values: []value{}, Findings: []finding{}}
	for _, v := range x.Values {
		out.Values = append(out.Values, value{v.Path, v.Key, v.Text, v.Numeric})
	}
	for _, e := range x.Evidence {
		out.Findings = append(out.Findings, finding{e.Finding.Kind, e.Finding.Value, e.Finding.Path, e.Finding.Method, e.Finding.Confidence, e.Reported, e.Why})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
