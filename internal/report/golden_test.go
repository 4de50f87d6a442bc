package report

import (
	"flag"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"phonehome/internal/flow"
	goldenfile "phonehome/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, "./internal/report", name, got, *update)
}

// onePartySummary is one party over a minute: an API host that receives an
// install ID and URLs over TLS, an ads host that receives the advertising ID
// over plain HTTP and the install ID over TLS, a host that pins its
// certificate and is passed through after, and a host that could not be
// reached, and one whose QUIC attempt was dropped; with the notes each of
// these leaves, and DNS lookups, one unanswered.
func onePartySummary() *Summary {
	s := NewSummary()
	at := time.Date(2026, 11, 18, 7, 0, 0, 0, time.UTC)
	phone := flow.Endpoint{Addr: netip.MustParseAddr("192.168.1.23"), Port: 40000}
	dest := flow.Destination{Owner: "Example Corp", Category: "analytics", Party: flow.PartyFirst, Site: "example.com"}
	installID := flow.Finding{Kind: "install_id", Value: "6f3c2b9e-0d4a-4c8e-b1f7-2a9d5e8c7b13", Path: "body › json:install_id"}
	add := func(sec int, f *flow.Flow) {
		f.Start, f.End, f.Client, f.Dest = at.Add(time.Duration(sec)*time.Second), at.Add(time.Duration(sec)*time.Second+40*time.Millisecond), phone, dest
		s.Add(f)
	}
	for i := 0; i < 6; i++ {
		f := &flow.Flow{Host: "api.example.com", Transport: flow.TransportHTTPS, BytesUp: 900, BytesDown: 300,
			Request: &flow.Request{Method: "POST", URL: "https://api.example.com/v2/collect"},
			Findings: []flow.Finding{installID,
				{Kind: "visited_url", Value: "https://news.example/" + string(rune('a'+i)), Path: "body › json:events[0].url"}}}
		switch i {
		case 1:
			f.Note(flow.NoteDecodeLimit, "decode: body › gzip › json: nested deeper than 32 levels; the rest was not searched")
			f.Note(flow.NoteDecodeLimit, "decode: body › gzip: inflated past 16 MiB; the rest was not searched")
		case 2, 3:
			f.Note(flow.NoteDecodeLimit, "decode: body › gzip: inflated past 16 MiB; the rest was not searched")
		case 5:
			f.Note(flow.NoteShed, "response body not kept or analysed: analysis was behind")
		}
		add(i*10, f)
	}
	for i := 0; i < 3; i++ {
		add(5+i*20, &flow.Flow{Host: "ads.example.com", Transport: flow.TransportHTTP, BytesUp: 400, BytesDown: 2000,
			Request:  &flow.Request{Method: "GET", URL: "http://ads.example.com/ad?gaid=d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90"},
			Findings: []flow.Finding{{Kind: "advertising_id", Value: "d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90", Path: "query:gaid"}}})
	}
	add(50, &flow.Flow{Host: "ads.example.com", Transport: flow.TransportHTTPS, BytesUp: 700, BytesDown: 100,
		Request: &flow.Request{Method: "POST", URL: "https://ads.example.com/v1/config"}, Findings: []flow.Finding{installID}})
	add(12, &flow.Flow{Host: "pinned.example.com", Transport: flow.TransportTLS, BytesUp: 517, BytesDown: 7,
		TLS:   &flow.TLSInfo{SNI: "pinned.example.com"},
		Notes: flow.Notes{{Code: flow.NoteCertRefused, Text: "client refused phonehome's certificate (the app pins its certificate or does not trust the CA); pinned.example.com is passed through untouched from now on: remote error: tls: unknown certificate authority"}}})
	for i := 0; i < 2; i++ {
		add(30+i*15, &flow.Flow{Host: "pinned.example.com", Transport: flow.TransportTLS, BytesUp: 3000, BytesDown: 9000,
			TLS:   &flow.TLSInfo{SNI: "pinned.example.com"},
			Notes: flow.Notes{{Code: flow.NotePassthrough, Text: "pinned.example.com refused phonehome's certificate before"}}})
	}
	add(40, &flow.Flow{Host: "cdn.example.com", Transport: flow.TransportHTTPS, BytesUp: 300,
		Request: &flow.Request{Method: "GET", URL: "https://cdn.example.com/app.json"},
		Notes:   flow.Notes{{Code: flow.NoteUpstream, Text: "upstream: dial tcp 203.0.113.9:443: i/o timeout"}}})
	add(20, &flow.Flow{Host: "quic.example.com", Transport: flow.TransportQUIC, BytesUp: 1200,
		Notes: flow.Notes{{Code: flow.NoteQUICDropped, Text: "tried QUIC (UDP 443): dropped so that the app falls back to TCP, which phonehome can read"}}})
	for i, name := range []string{"api.example.com", "ads.example.com", "gone.example.com"} {
		f := &flow.Flow{Start: at.Add(time.Duration(i) * time.Second), Client: phone, Transport: flow.TransportDNS,
			DNS: &flow.DNS{Name: name, Type: "A", Answered: name != "gone.example.com"}}
		if !f.DNS.Answered {
			f.Note(flow.NoteUnanswered, "no answer seen")
		}
		s.Add(f)
	}
	return s
}

// TestOnePartyGolden: the report of one party in every format. It shows the
// notes per destination (and of the DNS lookups), marks only the kinds sent
// unencrypted, and charts the party's hosts and its data kinds over time.
func TestOnePartyGolden(t *testing.T) {
	for format, out := range rendered(t, onePartySummary()) {
		ext := map[string]string{"text": "txt", "markdown": "md", "html": "html", "json": "json"}[format]
		golden(t, "one-party."+ext, out)
	}
}

// TestNotesInEveryFormat: notes are summarised per destination by code, a
// code counted once per flow, with the first text as the example, and shed
// work is said in plain words, in text, Markdown and HTML alike.
func TestNotesInEveryFormat(t *testing.T) {
	out := rendered(t, onePartySummary())
	for _, format := range []string{"text", "markdown", "html"} {
		for _, want := range []string{
			"decode_limit ×3", "decode: body › gzip › json: nested deeper than 32 levels",
			"shed", "part of the analysis was skipped because phonehome fell behind",
			"passthrough ×2", "relayed without decrypting", "cert_refused", "pins its certificate",
			"upstream", "i/o timeout", "unanswered", "no answer seen",
		} {
			if !strings.Contains(out[format], want) {
				t.Errorf("%s: no %q", format, want)
			}
		}
		if strings.Contains(out[format], "decode_limit ×4") {
			t.Errorf("%s: two notes of one code in one flow count as one flow", format)
		}
	}
	// a host with only a note on how its traffic was steered says nothing
	// in the text, which shows only hosts that say something; Markdown and
	// HTML list every host, with its notes
	if strings.Contains(out["text"], "quic.example.com —") {
		t.Error("text: quic.example.com is shown for a dropped QUIC attempt alone")
	}
	for _, format := range []string{"markdown", "html"} {
		if !strings.Contains(out[format], "quic_dropped") {
			t.Errorf("%s: no quic_dropped note", format)
		}
	}
	// the section belongs to its destination: api's notes come after its
	// heading and before the next host's
	text := out["text"]
	api, ads := strings.Index(text, "\napi.example.com —"), strings.Index(text, "\nads.example.com —")
	if dl := strings.Index(text, "decode_limit ×3"); api < 0 || ads < 0 || dl < api || dl > ads && ads > api {
		t.Errorf("decode_limit is not under api.example.com:\n%s", text)
	}
}

var matrixCell = regexp.MustCompile(`<rect x="\d+" y="\d+" width="17" height="17" fill="([^"]+)"( stroke="#c62828")?[^>]*><title>([^<]*)</title>`)

// TestMatrixCleartextPerKind: a cell of the party × kind matrix is outlined
// when a flow carried that kind to that party over plain HTTP, not because
// the party received something else in cleartext; the outline has a legend.
func TestMatrixCleartextPerKind(t *testing.T) {
	var b strings.Builder
	if err := WriteHTML(&b, onePartySummary().Doc()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	outlined := map[string]bool{}
	cells := 0
	for _, m := range matrixCell.FindAllStringSubmatch(page, -1) {
		cells++
		if m[1] == "#f1f1f1" {
			continue
		}
		kind := strings.Fields(strings.TrimPrefix(m[3], "Example Corp receives "))[0]
		outlined[strings.TrimSuffix(kind, ",")] = m[2] != ""
	}
	want := map[string]bool{"install_id": false, "advertising_id": true, "visited_url": false}
	if cells != 3 || len(outlined) != len(want) {
		t.Fatalf("%d cells, filled %v; want 3 filled: %v", cells, outlined, want)
	}
	for k, w := range want {
		if outlined[k] != w {
			t.Errorf("%s outlined %v, want %v (only advertising_id went over plain HTTP)", k, outlined[k], w)
		}
	}
	if !strings.Contains(page, "at least once unencrypted (plain HTTP or DNS)") || !strings.Contains(page, "outline:2px solid #c62828") {
		t.Error("the matrix has no legend for the red outline")
	}
}

// TestKindsOverTime: the timeline counts, per data kind, the requests that
// carried it in each slice: a kind once per request however many values it
// carried, context findings not at all, and kinds past the 64th that a
// session has seen as well as the first.
func TestKindsOverTime(t *testing.T) {
	s := NewSummary()
	at := time.Date(2026, 11, 18, 7, 0, 0, 0, time.UTC)
	const kinds = 70
	for i := 0; i < kinds; i++ {
		k := flow.Kind("kind_" + itoa(i))
		s.Add(&flow.Flow{Start: at.Add(time.Duration(i) * time.Second), Host: "t.example", Transport: flow.TransportHTTPS,
			Findings: []flow.Finding{{Kind: k, Value: "a"}, {Kind: k, Value: "b"}, {Kind: "kind_0", Value: "c"},
				{Kind: "device_model", Value: "Pixel 7", Context: true}}})
	}
	tl := s.Doc().Timeline
	if len(tl.Kinds) != kinds {
		t.Fatalf("%d kinds over time, want %d", len(tl.Kinds), kinds)
	}
	for k, c := range tl.Kinds {
		sum := 0
		for _, n := range c {
			sum += n
		}
		want := 1
		if k == "kind_0" {
			want = kinds
		}
		if sum != want {
			t.Errorf("%s: %d requests over time, want %d", k, sum, want)
		}
		if len(c) != len(tl.Counts["t.example"]) {
			t.Errorf("%s: %d slices, the requests %d", k, len(c), len(tl.Counts["t.example"]))
		}
	}
	if last := tl.Kinds["kind_69"]; last[len(last)-1] != 1 {
		t.Errorf("kind_69 is not in the last slice: %v", last)
	}
}
