// Command bulkload reproduces the bulk case of the proxy: many keep-alive
// connections downloading 1 MiB files through the proxy (a phone streaming
// video or updating apps) while one app sends small tracker requests carrying
// an IMEI. It has four modes:
//
//	bulkload -serve -cert FILE    the upstream servers (HTTP and HTTPS on
//	                              127.0.0.1, free ports), printed as
//	                              "http://ADDR https://ADDR"; serves
//	                              /video/... and /app/... (1 MiB),
//	                              /bytes?n=N&type=T, /1k and POST /v1/track
//	bulkload -proxy URL -cacert FILE -http URL -https URL [-d 20s] [-c 16] [-tracker 600]
//	                              the load: downloads and tracker requests
//	bulkload -tally < report.jsonl
//	                              counts tracker flows, IMEI findings and notes
//	                              in the JSON Lines of phonehome report
//	bulkload -freeport            prints a free TCP port on 127.0.0.1
//
// Every answer is checked: status 200, Content-Type and the exact size.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	fileSize  = 1 << 20
	trackPath = "/v1/track"
	// A valid IMEI: reporting-body prefix 35, Luhn check digit 9.
	imei      = "356938035643809"
	androidID = "3b6f2a9c81d04f81"
)

func main() {
	serve := flag.Bool("serve", false, "run the upstream servers")
	certOut := flag.String("cert", "upstream.pem", "where -serve writes its certificate")
	tally := flag.Bool("tally", false, "count tracker flows and findings in phonehome report --format json read from stdin")
	freePort := flag.Bool("freeport", false, "print a free TCP port on 127.0.0.1")
	proxy := flag.String("proxy", "", "proxy URL")
	cacert := flag.String("cacert", "", "CA certificate to trust (the proxy's)")
	httpBase := flag.String("http", "", "upstream HTTP base URL")
	httpsBase := flag.String("https", "", "upstream HTTPS base URL")
	conns := flag.Int("c", 16, "download connections (keep-alive), half HTTP and half HTTPS, half video/mp4 and half application/octet-stream")
	dur := flag.Duration("d", 20*time.Second, "how long the downloads run; the tracker requests are spread over it")
	tracker := flag.Int("tracker", 600, "tracker requests to send")
	flag.Parse()
	switch {
	case *serve:
		runServers(*certOut)
	case *tally:
		if err := runTally(os.Stdin, os.Stdout); err != nil {
			log.Fatal(err)
		}
	case *freePort:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	default:
		if *proxy == "" || *httpBase == "" || *httpsBase == "" {
			log.Fatal("bulkload: -proxy, -http and -https are needed (or -serve, -tally, -freeport)")
		}
		pool := x509.NewCertPool()
		if *cacert != "" {
			b, err := os.ReadFile(*cacert)
			if err != nil {
				log.Fatal(err)
			}
			if !pool.AppendCertsFromPEM(b) {
				log.Fatalf("%s: no certificate", *cacert)
			}
		}
		pu, err := url.Parse(*proxy)
		if err != nil {
			log.Fatal(err)
		}
		runLoad(pool, pu, *httpBase, *httpsBase, *conns, *dur, *tracker)
	}
}

// ---- upstream ----

func runServers(certOut string) {
	data := make([]byte, fileSize)
	r := rand.New(rand.NewChaCha8([32]byte{1}))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	write := func(w http.ResponseWriter, ctype string, n int) {
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for n > 0 {
			k := min(n, len(data))
			if _, err := w.Write(data[:k]); err != nil {
				return
			}
			n -= k
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/video/", func(w http.ResponseWriter, r *http.Request) { write(w, "video/mp4", fileSize) })
	mux.HandleFunc("/app/", func(w http.ResponseWriter, r *http.Request) { write(w, "application/octet-stream", fileSize) })
	mux.HandleFunc("/1k", func(w http.ResponseWriter, r *http.Request) { write(w, "application/octet-stream", 1024) })
	// /bytes?n=N&type=T answers N bytes; a request body is read and its
	// size returned in X-Got, so that the client can check it arrived whole.
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		got, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > 64<<20 {
			http.Error(w, "n: want 0..64 MiB", http.StatusBadRequest)
			return
		}
		ctype := r.URL.Query().Get("type")
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		w.Header().Set("X-Got", strconv.FormatInt(got, 10))
		write(w, ctype, n)
	})
	mux.HandleFunc(trackPath, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		if err := r.ParseForm(); err != nil { // reads forms; JSON bodies are read below
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.Copy(io.Discard, r.Body)
		b := []byte(`{"status":"ok","seq":` + strconv.Quote(r.URL.Query().Get("seq")) + `}`)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	ts := httptest.NewUnstartedServer(mux)
	ts.StartTLS()
	if err := os.WriteFile(certOut, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("http://%s https://%s\n", ln.Addr(), ts.Listener.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	hs.Close()
	ts.Close()
}

// ---- load ----

// errorLog counts errors by message, so that a flood of one error stays short.
type errorLog struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *errorLog) add(what string, err error) {
	var ue *url.Error
	if errors.As(err, &ue) { // without the URL, which differs on every request
		err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	msg := what + ": " + err.Error()
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	e.mu.Lock()
	if e.n == nil {
		e.n = map[string]int{}
	}
	e.n[msg]++
	e.mu.Unlock()
}

func (e *errorLog) print(w io.Writer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	msgs := make([]string, 0, len(e.n))
	for m := range e.n {
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool { return e.n[msgs[i]] > e.n[msgs[j]] })
	for i, m := range msgs {
		if i == 10 {
			fmt.Fprintf(w, "  ... %d more kinds\n", len(msgs)-i)
			break
		}
		fmt.Fprintf(w, "  %6d × %s\n", e.n[m], m)
	}
}

func transport(pool *x509.CertPool, proxy *url.URL) *http.Transport {
	return &http.Transport{
		Proxy:               http.ProxyURL(proxy),
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
		// HTTP/1.1 keep-alive, one connection per client, as the phone did.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
}

// fetch GETs u and checks the answer: 200, the Content-Type and exactly want bytes.
func fetch(c *http.Client, u, ctype string, want int64) (int64, error) {
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, err
	}
	if resp.StatusCode != 200 {
		return n, fmt.Errorf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != ctype {
		return n, fmt.Errorf("Content-Type %q, want %q", got, ctype)
	}
	if n != want {
		return n, fmt.Errorf("%d bytes, want %d", n, want)
	}
	return n, nil
}

func runLoad(pool *x509.CertPool, proxy *url.URL, httpBase, httpsBase string, conns int, dur time.Duration, trackers int) {
	var errs errorLog
	var files, bytes, dlErrs atomic.Int64
	var perKind [2][2]atomic.Int64 // [https][octet-stream] files
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	var dlEnd atomic.Int64
	for i := range conns {
		secure, octet := i%2 == 1, (i/2)%2 == 1
		base, prefix, ctype := httpBase, "/video/", "video/mp4"
		if secure {
			base = httpsBase
		}
		if octet {
			prefix, ctype = "/app/", "application/octet-stream"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: transport(pool, proxy), Timeout: 2 * time.Minute}
			for n := 0; time.Now().Before(deadline); n++ {
				ext := ".mp4"
				if octet {
					ext = ".bin"
				}
				k, err := fetch(c, fmt.Sprintf("%s%s%d-%d%s", base, prefix, i, n, ext), ctype, fileSize)
				bytes.Add(k)
				if err != nil {
					dlErrs.Add(1)
					errs.add("download", err)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				files.Add(1)
				perKind[b2i(secure)][b2i(octet)].Add(1)
			}
			t := int64(time.Since(start))
			for {
				old := dlEnd.Load()
				if t <= old || dlEnd.CompareAndSwap(old, t) {
					break
				}
			}
		}()
	}

	// The tracker: one app, one keep-alive connection per scheme, its
	// requests spread evenly over the downloads' time.
	var answered, trErrs atomic.Int64
	var trLat []time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		cs := [2]*http.Client{
			{Transport: transport(pool, proxy), Timeout: time.Minute},
			{Transport: transport(pool, proxy), Timeout: time.Minute},
		}
		gap := dur / time.Duration(max(trackers, 1))
		for seq := range trackers {
			if d := time.Until(start.Add(time.Duration(seq) * gap)); d > 0 {
				time.Sleep(d)
			}
			base := httpBase
			if seq%2 == 0 {
				base = httpsBase
			}
			t0 := time.Now()
			err := track(cs[seq%2], base, seq)
			trLat = append(trLat, time.Since(t0))
			if err != nil {
				trErrs.Add(1)
				errs.add("tracker", err)
				continue
			}
			answered.Add(1)
		}
	}()
	wg.Wait()
	el := time.Duration(dlEnd.Load())
	sort.Slice(trLat, func(i, j int) bool { return trLat[i] < trLat[j] })
	fmt.Printf("downloads: %d keep-alive connections for %.1f s: %d files of 1 MiB (HTTP video/mp4 %d, HTTP octet-stream %d, HTTPS video/mp4 %d, HTTPS octet-stream %d), %d errors\n",
		conns, el.Seconds(), files.Load(), perKind[0][0].Load(), perKind[0][1].Load(), perKind[1][0].Load(), perKind[1][1].Load(), dlErrs.Load())
	fmt.Printf("download throughput: %.1f MiB/s (%.0f MiB in all)\n", float64(bytes.Load())/(1<<20)/el.Seconds(), float64(bytes.Load())/(1<<20))
	fmt.Printf("tracker requests answered: %d of %d (%d errors); latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		answered.Load(), trackers, trErrs.Load(), pct(trLat, 50), pct(trLat, 99), pct(trLat, 100))
	if len(errs.n) > 0 {
		fmt.Println("errors:")
		errs.print(os.Stdout)
	}
}

func pct(l []time.Duration, p int) float64 {
	if len(l) == 0 {
		return 0
	}
	i := min(len(l)*p/100, len(l)-1)
	return float64(l[i].Microseconds()) / 1000
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// track POSTs one tracker request: a form for even seq / 2, JSON otherwise.
func track(c *http.Client, base string, seq int) error {
	var body, ctype string
	ts := time.Now().UnixMilli()
	if (seq/2)%2 == 0 {
		ctype = "application/x-www-form-urlencoded"
		body = url.Values{"imei": {imei}, "android_id": {androidID}, "event": {"app_open"},
			"sender": {"com.example.tracked"}, "ts": {strconv.FormatInt(ts, 10)}}.Encode()
	} else {
		ctype = "application/json"
		b, _ := json.Marshal(map[string]any{"imei": imei, "android_id": androidID, "event": "app_open",
			"sender": "com.example.tracked", "ts": ts})
		body = string(b)
	}
	resp, err := c.Post(fmt.Sprintf("%s%s?seq=%d", base, trackPath, seq), ctype, strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ans struct{ Status, Seq string }
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	if resp.StatusCode != 200 || ans.Status != "ok" || ans.Seq != strconv.Itoa(seq) {
		return fmt.Errorf("answer: status %d, %+v", resp.StatusCode, ans)
	}
	return nil
}

// ---- tally ----

// line holds the fields of flow and finding lines that the tally needs.
type line struct {
	Type  string   `json:"type"`
	ID    int64    `json:"id"`
	URL   string   `json:"url"`
	Notes []string `json:"notes"`
	Resp  *struct {
		Size      int64 `json:"size"`
		Truncated bool  `json:"truncated"`
	} `json:"response_body"`
	Flow  int64  `json:"flow"`
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

// notAnalysed says whether a note tells that (part of) the analysis was skipped.
func notAnalysed(note string) bool {
	n := strings.ToLower(note)
	for _, s := range []string{"not analy", "analysis", "skipped", "shed", "fell behind", "queue"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

func runTally(r io.Reader, w io.Writer) error {
	dec := json.NewDecoder(r)
	trackerFlows := map[int64]int{} // flow id → seq
	seqs := map[int]bool{}
	imeiFlows := map[int64]bool{}
	var flows, noted, notAn, trackerNoted, trackerNotAn int
	noteTexts := map[string]int{}
	byPath := map[string]int{}
	var cut int
	for {
		var l line
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		switch l.Type {
		case "flow":
			flows++
			if l.Resp != nil && l.Resp.Truncated {
				cut++
			}
			for _, p := range []string{"/video/", "/app/", "/1k", "/bytes", trackPath} {
				if strings.Contains(l.URL, p) {
					byPath[p]++
					break
				}
			}
			isTracker := strings.Contains(l.URL, trackPath)
			if isTracker {
				seq := -1
				if u, err := url.Parse(l.URL); err == nil {
					if s, err := strconv.Atoi(u.Query().Get("seq")); err == nil {
						seq = s
					}
				}
				trackerFlows[l.ID] = seq
				seqs[seq] = true
			}
			if len(l.Notes) > 0 {
				noted++
				if isTracker {
					trackerNoted++
				}
				skipped := false
				for _, n := range l.Notes {
					noteTexts[n]++
					skipped = skipped || notAnalysed(n)
				}
				if skipped {
					notAn++
					if isTracker {
						trackerNotAn++
					}
				}
			}
		case "finding":
			if l.Kind == "imei" && l.Value == imei {
				imeiFlows[l.Flow] = true
			}
		}
	}
	found := 0
	for id := range trackerFlows {
		if imeiFlows[id] {
			found++
		}
	}
	fmt.Fprintf(w, "flows stored: %d in all; tracker flows stored: %d (%d distinct requests), with the IMEI found: %d\n",
		flows, len(trackerFlows), len(seqs), found)
	fmt.Fprintf(w, "flows with a note: %d (tracker flows: %d); with a note that something was not analysed: %d (tracker flows: %d)\n",
		noted, trackerNoted, notAn, trackerNotAn)
	fmt.Fprintf(w, "flows stored by path: /video/ %d, /app/ %d, /1k %d, /bytes %d, %s %d\n",
		byPath["/video/"], byPath["/app/"], byPath["/1k"], byPath["/bytes"], trackPath, byPath[trackPath])
	fmt.Fprintf(w, "flows whose stored answer is marked truncated: %d\n", cut)
	texts := make([]string, 0, len(noteTexts))
	for t := range noteTexts {
		texts = append(texts, t)
	}
	sort.Slice(texts, func(i, j int) bool { return noteTexts[texts[i]] > noteTexts[texts[j]] })
	for i, t := range texts {
		if i == 8 {
			fmt.Fprintf(w, "  ... %d more notes\n", len(texts)-i)
			break
		}
		shown := t
		if len(shown) > 140 {
			shown = shown[:140] + "..."
		}
		fmt.Fprintf(w, "  note %6d × %s\n", noteTexts[t], shown)
	}
	return nil
}
