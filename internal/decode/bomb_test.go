package decode

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	kgzip "github.com/klauspost/compress/gzip"
)

// The bombs here are real compressed streams, built as they stream from a
// reader that makes their content up: what a bomb inflates to is never held.
// Each is decoded and what that cost is measured against the size limit.

// repeater reads as pat repeated up to n bytes.
type repeater struct {
	pat []byte
	n   int64
	off int
}

func (r *repeater) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.pat[r.off:])
		n += c
		r.off = (r.off + c) % len(r.pat)
	}
	r.n -= int64(n)
	return n, nil
}

// stream reads prefix, then pat repeated to n bytes, then suffix.
func stream(prefix string, pat string, n int64, suffix string) io.Reader {
	return io.MultiReader(strings.NewReader(prefix), &repeater{pat: []byte(pat), n: n}, strings.NewReader(suffix))
}

func zeros(n int64) io.Reader { return &repeater{pat: make([]byte, 4096), n: n} }

// gzipStream compresses what r reads as one gzip member.
func gzipStream(tb testing.TB, r io.Reader) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, _ := kgzip.NewWriterLevel(&buf, kgzip.BestSpeed)
	if _, err := io.Copy(w, r); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// gzipText is prefix, pat repeated to n bytes, and suffix, as one gzip
// stream of members one after another, as RFC 1952 allows: the members of
// the repeated part are all the same, about 1 MiB of pat each, so one is
// compressed and repeated. Decompressed, it is one text.
func gzipText(tb testing.TB, prefix, pat string, n int64, suffix string) []byte {
	tb.Helper()
	per := max(1, (1<<20)/len(pat)) // pats to a member
	member := int64(per * len(pat))
	one := gzipStream(tb, stream("", pat, member, ""))
	out := gzipStream(tb, strings.NewReader(prefix))
	out = append(out, bytes.Repeat(one, int(n/member))...)
	out = append(out, gzipStream(tb, stream("", pat, n%member, suffix))...)
	return out
}

// gzipGiB is 1 GiB of zeros as gzip: about 1 MiB.
var gzipGiB = sync.OnceValue(func() []byte {
	one := gzipStream(nopTB{}, zeros(16<<20))
	return bytes.Repeat(one, 64)
})

// nopTB lets a builder run outside a test; the builders fail only on a
// broken compressor.
type nopTB struct{ testing.TB }

func (nopTB) Helper()           {}
func (nopTB) Fatal(args ...any) { panic(fmt.Sprint(args...)) }

// zstdRLE is a zstd frame of n zero bytes in RLE blocks (4 bytes each for
// 128 KiB) whose header declares the window wd (a Window_Descriptor byte),
// or, when fcs > 0, a single segment of fcs bytes (the window is then the
// whole content).
func zstdRLE(wd byte, fcs uint64, n int64) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd}
	if fcs > 0 {
		b = append(b, 3<<6|1<<5) // 8-byte content size, single segment
		b = binary.LittleEndian.AppendUint64(b, fcs)
	} else {
		b = append(b, 0, wd)
	}
	for n > 0 {
		size := min(n, 128<<10)
		n -= size
		h := uint32(size)<<3 | 1<<1 // RLE
		if n == 0 {
			h |= 1 // last
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16), 0)
	}
	return b
}

// oneMember is 1 GiB of zeros through one gzip.Writer: one member, whose
// trailer declares the size (a slowBomb under the race detector).
func oneMember(tb testing.TB) []byte {
	n := int64(1 << 30)
	if raceEnabled {
		n = slowBomb()
	}
	return gzipStream(tb, zeros(n))
}

// lying is a gzip stream whose trailer declares 100 bytes.
func lying(b []byte) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[len(b)-4:], 100)
	return b
}

func brotliZeros(tb testing.TB, n int64) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w := brotli.NewWriterOptions(&buf, brotli.WriterOptions{Quality: 1, LGWin: 24})
	if _, err := io.Copy(w, zeros(n)); err != nil {
		tb.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

func deflateZeros(tb testing.TB, n int64) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	if _, err := io.Copy(w, zeros(n)); err != nil {
		tb.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

// memUse is what running something cost: bytes allocated, and the peak of
// the heap (live objects and garbage not yet swept) above where it started.
type memUse struct{ alloc, peak uint64 }

func (m memUse) String() string {
	return fmt.Sprintf("allocated %.1f MiB, heap peak +%.1f MiB", float64(m.alloc)/(1<<20), float64(m.peak)/(1<<20))
}

// measure runs f and reports its memory use. The heap is sampled every
// 100 µs through runtime/metrics, which does not stop the world; the
// allocated bytes are exact (and bound the peak: the heap grows only by
// allocating).
func measure(f func()) memUse {
	runtime.GC()
	runtime.GC()
	const heap = "/memory/classes/heap/objects:bytes"
	sample := []metrics.Sample{{Name: heap}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	stop, peakc := make(chan struct{}), make(chan uint64)
	go func() {
		s := []metrics.Sample{{Name: heap}}
		peak := base
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				peakc <- peak
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	peak := <-peakc
	runtime.ReadMemStats(&after)
	return memUse{alloc: after.TotalAlloc - before.TotalAlloc, peak: peak - base}
}

// outputSize is the bytes of text a result holds.
func outputSize(r Result) int {
	n := 0
	for _, v := range r.Values {
		n += len(v.Text)
	}
	return n
}

// The limit the bombs are decoded under; and the ratio limit is lifted, so
// that the size limit alone holds them: the worst case.
const bombLimit = 16 << 20

var bombLimits = Limits{MaxDecoded: bombLimit, MaxRatio: 1 << 30}

type bomb struct {
	name string
	req  Request
	lim  Limits
}

func gzipped(req Request) Request {
	req.Headers = append(req.Headers, Header{"Content-Encoding", "gzip"})
	return req
}

// bombs is every kind of bomb: compressed ones, and payloads that stay
// within the size limit but make the layers above the decompression copy or
// allocate per value. They are made once for all the tests.
var bombs = sync.OnceValue(func() []bomb { return makeBombs(nopTB{}) })

// slowBomb is what the bombs that take long to compress inflate to: 64 MiB,
// or 24 MiB under the race detector, which makes compressing ten times
// slower. Either is a bomb to a 16 MiB limit.
func slowBomb() int64 {
	if raceEnabled {
		return 24 << 20
	}
	return 64 << 20
}

func makeBombs(tb testing.TB) []bomb {
	const gib = 1 << 30
	fit := int64(bombLimit - 64<<10) // text that fits the limit once decompressed
	inner := base64.StdEncoding.EncodeToString(gzipGiB())
	// JSON in a JSON string, 12 levels down, around a 16 MiB string: each
	// level's quotes are escaped once more.
	var open strings.Builder
	var shut string
	for i := 0; i < 11; i++ {
		q := strings.Repeat(`\`, 1<<i-1) + `"`
		open.WriteString(`{` + q + `a` + q + `:` + q)
		shut = q + `}` + shut
	}
	nestedPrefix, nestedSuffix := open.String(), shut
	const part = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n"
	return []bomb{
		{"gzip 1 GiB of zeros", gzipped(Request{Body: gzipGiB()}), bombLimits},
		{"gzip 1 GiB of zeros, default limits", gzipped(Request{Body: gzipGiB()}), Limits{}},
		{"gzip 1 GiB of zeros, one member", gzipped(Request{Body: oneMember(tb)}), bombLimits},
		{"gzip 1 GiB of zeros, declaring 100 bytes", gzipped(Request{Body: lying(gzipGiB())}), bombLimits},
		{"gzip sniffed, 1 GiB of text", Request{Body: gzipText(tb, "", "a", gib, "")}, bombLimits},
		{"gzip in base64 in JSON in gzip", gzipped(Request{Body: gzipStream(tb, stream(`{"d":"`+inner+`"}`, "", 0, ""))}), bombLimits},
		{"zstd declaring a 256 MiB window", Request{Body: zstdRLE(18<<3, 0, gib)}, bombLimits},
		{"zstd declaring a 256 MiB single segment", Request{Body: zstdRLE(0, 256<<20, 256<<20)}, bombLimits},
		{"zstd 1 GiB of zeros in an 8 MiB window", Request{Body: zstdRLE(13<<3, 0, gib)}, bombLimits},
		{"zstd 1 GiB of zeros, 8 MiB window, by header", Request{Headers: []Header{{"Content-Encoding", "zstd"}}, Body: zstdRLE(13<<3, 0, gib)}, bombLimits},
		{"brotli zeros, 16 MiB window", Request{Headers: []Header{{"Content-Encoding", "br"}}, Body: brotliZeros(tb, slowBomb())}, bombLimits},
		{"deflate zeros", Request{Headers: []Header{{"Content-Encoding", "deflate"}}, Body: deflateZeros(tb, slowBomb())}, bombLimits},
		{"JSON in JSON 12 deep around 16 MiB", gzipped(Request{Body: gzipText(tb, nestedPrefix, "x", fit, nestedSuffix)}), bombLimits},
		{"JSON array of 8M numbers", gzipped(Request{Body: gzipText(tb, "[", "0,", fit/2*2, "0]")}), bombLimits},
		{"JSON object of distinct keys", gzipped(Request{Body: gzipStream(tb, keyedObject(min(fit, 4*slowBomb()/16)))}), bombLimits},
		{"form of 4M fields", gzipped(Request{Body: gzipText(tb, "", "a=1&", fit/4*4, "a=1")}), bombLimits},
		{"XML of 4M empty elements", gzipped(Request{Body: gzipText(tb, "<r>", "<a/>", fit/4*4, "</r>")}), bombLimits},
		{"XML of 1M attributes", gzipped(Request{Body: gzipText(tb, "<r>", `<a b="1" c="2"/>`, fit/16*16, "</r>")}), bombLimits},
		{"protobuf of 8M fields", gzipped(Request{Body: gzipText(tb, "", "\x08\x00", fit/2*2, "")}), bombLimits},
		{"multipart of 150k parts", gzipped(Request{Headers: []Header{{"Content-Type", "multipart/form-data; boundary=b"}},
			Body: gzipText(tb, "", part, fit/2/int64(len(part))*int64(len(part)), "--b--\r\n")}), bombLimits},
		{"base64 string shared 20k times in a binary plist", Request{Body: sharedPlist(1 << 20)}, bombLimits},
	}
}

// keyedObject is a JSON object of distinct keys, about n bytes.
func keyedObject(n int64) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriter(pw)
		w.WriteString("{")
		written := int64(1)
		for i := 0; written < n-32; i++ {
			k := fmt.Sprintf(`"k%d":0,`, i)
			w.WriteString(k)
			written += int64(len(k))
		}
		w.WriteString(`"end":0}`)
		w.Flush()
		pw.Close()
	}()
	return pr
}

// sharedPlist is a binary property list whose root array refers 20,000
// times to one base64 string of size bytes.
func sharedPlist(size int) []byte {
	const refs = 20000
	b := []byte("bplist00")
	offs := []int{}
	// object 0: the array, 2-byte references
	offs = append(offs, len(b))
	b = append(b, 0xAF, 0x11, refs>>8, refs&0xff)
	for i := 0; i < refs; i++ {
		b = append(b, 0, 1)
	}
	// object 1: the ASCII string, 4-byte length
	offs = append(offs, len(b))
	b = append(b, 0x5F, 0x12)
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	b = append(b, strings.Repeat("QUFB", size/4)...)
	table := len(b)
	for _, o := range offs {
		b = binary.BigEndian.AppendUint32(b, uint32(o))
	}
	t := make([]byte, 32)
	t[6], t[7] = 4, 2 // offset size, reference size
	binary.BigEndian.PutUint64(t[8:], uint64(len(offs)))
	binary.BigEndian.PutUint64(t[16:], 0)
	binary.BigEndian.PutUint64(t[24:], uint64(table))
	return append(b, t...)
}

// TestBombs decodes each bomb and holds what it cost to 4 times the size
// limit, its output to the limit, and wants the limit it hit noted.
func TestBombs(t *testing.T) {
	for _, b := range bombs() {
		t.Run(b.name, func(t *testing.T) {
			var r Result
			m := measure(func() { r = Decode(b.req, b.lim) })
			lim := b.lim
			lim.defaults()
			t.Logf("%d bytes in: %v; output %.1f MiB, %d values, limits %q", len(b.req.Body), m,
				float64(outputSize(r))/(1<<20), len(r.Values), r.Limits)
			if bound := uint64(4 * lim.MaxDecoded); m.alloc > bound || m.peak > bound {
				t.Errorf("%v: over 4 × the %d MiB limit", m, lim.MaxDecoded>>20)
			}
			if n := outputSize(r); n > lim.MaxDecoded {
				t.Errorf("output %d bytes, over the limit", n)
			}
			if len(r.Limits) == 0 {
				t.Error("no limit noted")
			}
		})
	}
}

// TestBombsAtOnce: five bombs decoded at once, as five connections through
// the proxy would, stay within 5 times what one may cost.
func TestBombsAtOnce(t *testing.T) {
	req := gzipped(Request{Body: gzipGiB()})
	var wg sync.WaitGroup
	results := make([]Result, 5)
	m := measure(func() {
		for i := range results {
			wg.Go(func() { results[i] = Decode(req, bombLimits) })
		}
		wg.Wait()
	})
	t.Logf("five 1 GiB gzip bombs at once: %v", m)
	if bound := uint64(5 * 4 * bombLimit); m.alloc > bound || m.peak > bound {
		t.Errorf("%v: over 5 × 4 × the limit", m)
	}
	for _, r := range results {
		if len(r.Limits) == 0 {
			t.Error("no limit noted")
		}
	}
}

// TestDecoderAfterBomb: a Decoder, as the detect engine keeps one in a pool,
// keeps nothing of a bomb once it has decoded the next request.
func TestDecoderAfterBomb(t *testing.T) {
	var d Decoder
	small := trackerRequest()
	d.Decode(small, Limits{})
	all := bombs()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	// The bombs that leave the most behind: large buffers, large texts, many
	// keys and values.
	keep := map[string]bool{"gzip 1 GiB of zeros": true, "gzip sniffed, 1 GiB of text": true, "JSON object of distinct keys": true,
		"multipart of 150k parts": true, "base64 string shared 20k times in a binary plist": true, "zstd 1 GiB of zeros in an 8 MiB window": true}
	for _, b := range all {
		if !keep[b.name] {
			continue
		}
		d.Decode(b.req, b.lim)
		if r := d.Decode(small, Limits{}); len(r.Limits) != 0 || len(r.Values) < 20 {
			t.Fatalf("after %s: %d values, limits %v", b.name, len(r.Values), r.Limits)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	kept := 0
	for _, b := range d.bufs {
		kept += cap(b)
	}
	if kept > maxPooledBufs*maxPooledBuf || cap(d.values) > maxKeptValues || len(d.strings) > maxInterned {
		t.Errorf("the decoder keeps %d bytes of buffers, %d values, %d strings", kept, cap(d.values), len(d.strings))
	}
	// The bombs' output is garbage by now; what the decoder holds is not.
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("after the bombs, the decoder keeps %d KiB of buffers; the heap grew by %.1f MiB", kept>>10, float64(grown)/(1<<20))
	if grown > 4<<20 {
		t.Errorf("the heap grew by %.1f MiB while the decoder decoded bombs", float64(grown)/(1<<20))
	}
	runtime.KeepAlive(&d)
}

// TestLargeRequest: a large honest request, 4 MiB of JSON events, is decoded
// whole within the default limits.
func TestLargeRequest(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	const events = 2000
	for i := 0; i < events; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"n":%d,"note":"%s"}`, i, strings.Repeat("lorem ipsum ", 170))
	}
	b.WriteString(`]}`)
	body := gzipStream(t, strings.NewReader(b.String()))
	var r Result
	m := measure(func() { r = Decode(gzipped(Request{Body: body}), Limits{}) })
	t.Logf("%.1f MiB of JSON: %v", float64(b.Len())/(1<<20), m)
	if len(r.Limits) != 0 || len(r.Values) != 2*events {
		t.Errorf("%d values, limits %v", len(r.Values), r.Limits)
	}
	if v := find(t, r, "body › gzip › json:events[1999].n"); v.Text != "1999" {
		t.Errorf("last event: %+v", v)
	}
}

// TestWindowLimit: a window larger than a small size limit is refused, and
// noted, before anything is allocated for it.
func TestWindowLimit(t *testing.T) {
	var br bytes.Buffer
	w := brotli.NewWriterOptions(&br, brotli.WriterOptions{Quality: 5, LGWin: 22})
	w.Write([]byte(`{"a":"b"}`))
	w.Close()
	for _, c := range []struct {
		name string
		req  Request
	}{
		{"brotli, 4 MiB window", Request{Headers: []Header{{"Content-Encoding", "br"}}, Body: br.Bytes()}},
		{"zstd, 8 MiB window", Request{Body: zstdRLE(13<<3, 0, 1<<10)}},
	} {
		r := Decode(c.req, Limits{MaxDecoded: 1 << 20})
		if len(r.Limits) != 1 || !strings.HasPrefix(r.Limits[0], "window limit at body") || len(r.Values) != 0 {
			t.Errorf("%s: values %v, limits %v", c.name, r.Values, r.Limits)
		}
		if r := Decode(c.req, Limits{}); len(r.Limits) != 0 || len(r.Values) == 0 {
			t.Errorf("%s, default limits: values %v, limits %v", c.name, r.Values, r.Limits)
		}
	}
}
