package hello_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"phonehome/internal/capture/hello"
	"phonehome/internal/synth"
)

// realHellos returns the first flight of each side of a real crypto/tls handshake.
func realHellos(t testing.TB, sni string, alpn []string) (client, server []byte) {
	chunks, err := synth.TLSConversation(sni, alpn, 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if c.FromClient && client == nil {
			client = c.Data
		}
		if !c.FromClient && server == nil {
			server = c.Data
		}
	}
	return client, server
}

func TestRealHandshake(t *testing.T) {
	client, server := realHellos(t, "tracking.intl.miui.com", []string{"h2", "http/1.1"})
	if !hello.LooksLikeTLS(client) {
		t.Fatal("client flight not recognised as TLS")
	}
	ch, err := hello.ParseClientHelloRecords(client)
	if err != nil {
		t.Fatal(err)
	}
	if ch.SNI != "tracking.intl.miui.com" || !slices.Equal(ch.ALPN, []string{"h2", "http/1.1"}) || !slices.Contains(ch.Versions, 0x0304) {
		t.Errorf("client hello %+v", ch)
	}
	sh, err := hello.ParseServerHelloRecords(server)
	if err != nil || hello.VersionName(sh.Version) != "TLS 1.3" {
		t.Errorf("server hello %+v %v", sh, err)
	}
	// Every prefix is either incomplete or parses; none may panic or mislead.
	for i := range client {
		if _, err := hello.ParseClientHelloRecords(client[:i]); !errors.Is(err, hello.ErrNeedMore) {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
}

// TestSplitRecords puts the hello into several TLS records, as some clients do.
func TestSplitRecords(t *testing.T) {
	client, _ := realHellos(t, "a.example", nil)
	msg := client[5:]
	var split []byte
	for len(msg) > 0 {
		n := min(len(msg), 100)
		split = append(split, 22, 3, 1, byte(n>>8), byte(n))
		split = append(split, msg[:n]...)
		msg = msg[n:]
	}
	ch, err := hello.ParseClientHelloRecords(split)
	if err != nil || ch.SNI != "a.example" {
		t.Errorf("%+v %v", ch, err)
	}
}

func TestNotAHello(t *testing.T) {
	for _, b := range [][]byte{[]byte("GET / HTTP/1.1\r\n"), {22, 3, 1, 0, 0}, {23, 3, 3, 0, 5, 1, 2, 3, 4, 5}, {22, 3, 3, 0, 4, 2, 0, 0, 0}} {
		if _, err := hello.ParseClientHelloRecords(b); err == nil || errors.Is(err, hello.ErrNeedMore) && !bytes.HasPrefix(b, []byte{22}) {
			t.Errorf("% x: %v", b, err)
		}
	}
}

func FuzzClientHello(f *testing.F) {
	client, server := realHellos(f, "seed.example", []string{"h2"})
	f.Add(client)
	f.Add(server)
	f.Add(client[5:])
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = hello.ParseClientHelloRecords(b)
		_, _ = hello.ParseServerHelloRecords(b)
		_, _ = hello.ParseClientHello(b)
	})
}

func BenchmarkClientHello(b *testing.B) {
	client, _ := realHellos(b, "tracking.intl.miui.com", []string{"h2", "http/1.1"})
	b.SetBytes(int64(len(client)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := hello.ParseClientHelloRecords(client); err != nil {
			b.Fatal(err)
		}
	}
}
