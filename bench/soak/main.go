// Command soak drives a proxy at a moderate, steady rate for a long time and
// watches the proxy's process: every -every it samples its resident memory
// (VmRSS), its open descriptors (/proc/PID/fd) and, with -debug, its
// goroutines (net/http/pprof's goroutine profile), prints a row, and at the
// end says for each whether it stayed flat or grew.
//
// The load mixes small and large answers (1 KiB to 1 MiB, log-uniform), HTTP
// and HTTPS, keep-alive connections and a new connection per request, and
// some request bodies (small forms and uploads up to 256 KiB). It needs the
// upstream of bench/bulkload -serve (/bytes?n=N&type=T, which returns the
// size of the body it read in X-Got). Every answer is checked: status,
// exact size, and that the request body arrived whole.
//
//	soak -proxy URL -cacert FILE -http URL -https URL -pid PID [-debug ADDR] [-d 10m] [-rate 40]
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	proxy := flag.String("proxy", "", "proxy URL")
	cacert := flag.String("cacert", "", "CA certificate to trust (the proxy's)")
	httpBase := flag.String("http", "", "upstream HTTP base URL (bench/bulkload -serve)")
	httpsBase := flag.String("https", "", "upstream HTTPS base URL")
	pid := flag.Int("pid", 0, "the proxy's process id, to sample")
	debug := flag.String("debug", "", "the proxy's net/http/pprof address (host:port); empty: goroutines n/a")
	dur := flag.Duration("d", 10*time.Minute, "how long to run")
	rate := flag.Float64("rate", 40, "requests per second")
	every := flag.Duration("every", 10*time.Second, "sampling interval")
	warm := flag.Duration("warmup", 0, "samples up to this time are not judged (default: a sixth of -d, at most 1 min)")
	workers := flag.Int("workers", 32, "requests in flight at most")
	flag.Parse()
	if *proxy == "" || *httpBase == "" || *httpsBase == "" || *pid == 0 {
		log.Fatal("soak: -proxy, -http, -https and -pid are needed")
	}
	if *warm == 0 {
		*warm = min(*dur/6, time.Minute)
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
	l := &load{httpBase: *httpBase, httpsBase: *httpsBase}
	tr := func(keepAlive bool) *http.Client {
		return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			Proxy:               http.ProxyURL(pu),
			TLSClientConfig:     &tls.Config{RootCAs: pool},
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		}}
	}
	l.keep, l.fresh = tr(true), tr(false)
	s := &sampler{pid: *pid, debug: *debug}
	if _, err := s.sample(); err != nil {
		log.Fatal(err)
	}
	run(l, s, *dur, *rate, *every, *warm, *workers)
}

type load struct {
	httpBase, httpsBase string
	keep, fresh         *http.Client

	ok, errs, late, up, down atomic.Int64
	inFlight                 atomic.Int64
	mu                       sync.Mutex
	lat                      []time.Duration // since the last sample
	errMsgs                  map[string]int
}

var types = []string{"application/octet-stream", "video/mp4", "image/jpeg", "application/json"}

// one makes one request of a random shape and checks its answer.
func (l *load) one(r *rand.Rand) {
	size := int(math.Round(1024 * math.Pow(2, 10*r.Float64()))) // 1 KiB .. 1 MiB
	base, c := l.httpBase, l.keep
	if r.IntN(2) == 0 {
		base = l.httpsBase
	}
	if r.IntN(4) == 0 {
		c = l.fresh
	}
	u := fmt.Sprintf("%s/bytes?n=%d&type=%s", base, size, url.QueryEscape(types[r.IntN(len(types))]))
	var req *http.Request
	var sent int
	switch r.IntN(8) {
	case 0: // a tracker-like form
		body := url.Values{"android_id": {"3b6f2a9c81d04f81"}, "event": {"screen_view"},
			"ts": {strconv.FormatInt(time.Now().UnixMilli(), 10)}, "pad": {strings.Repeat("x", r.IntN(2048))}}.Encode()
		sent = len(body)
		req, _ = http.NewRequest(http.MethodPost, u, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case 1: // an upload
		body := make([]byte, 1024+r.IntN(255*1024))
		for i := range body {
			body[i] = byte(r.Uint32())
		}
		sent = len(body)
		req, _ = http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/octet-stream")
	default:
		req, _ = http.NewRequest(http.MethodGet, u, nil)
	}
	t0 := time.Now()
	l.inFlight.Add(1)
	defer l.inFlight.Add(-1)
	err := func() error {
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		l.down.Add(n)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		if n != int64(size) {
			return fmt.Errorf("%d bytes, want %d", n, size)
		}
		if got := resp.Header.Get("X-Got"); got != strconv.Itoa(sent) {
			return fmt.Errorf("upstream read %s request bytes, %d sent", got, sent)
		}
		return nil
	}()
	d := time.Since(t0)
	l.up.Add(int64(sent))
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errs.Add(1)
		if l.errMsgs == nil {
			l.errMsgs = map[string]int{}
		}
		msg := err.Error()
		var ue *url.Error
		if errors.As(err, &ue) { // without the URL, which differs on every request
			msg = ue.Op + ": " + ue.Err.Error()
		}
		if len(msg) > 160 {
			msg = msg[:160] + "..."
		}
		l.errMsgs[msg]++
		return
	}
	l.ok.Add(1)
	l.lat = append(l.lat, d)
}

// takeLatencies returns p50 and p99 in ms of the requests since the last call.
func (l *load) takeLatencies() (float64, float64) {
	l.mu.Lock()
	lat := l.lat
	l.lat = nil
	l.mu.Unlock()
	if len(lat) == 0 {
		return 0, 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return ms(lat[len(lat)/2]), ms(lat[min(len(lat)*99/100, len(lat)-1)])
}

type sample struct {
	t          time.Duration
	rss        float64 // MiB
	fds        int
	goroutines int // -1: n/a
}

type sampler struct {
	pid   int
	debug string
}

func (s *sampler) sample() (sample, error) {
	var out sample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return out, fmt.Errorf("the proxy (pid %d): %w", s.pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				return out, fmt.Errorf("VmRSS %q", v)
			}
			out.rss = float64(kb) / 1024
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	if err != nil {
		return out, err
	}
	out.fds = len(fds)
	out.goroutines = -1
	if s.debug != "" {
		out.goroutines, err = goroutines(s.debug)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// goroutines reads the first line of the goroutine profile: "goroutine profile: total N".
func goroutines(addr string) (int, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil && line == "" {
		return 0, err
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile: first line %q", line)
	}
	return strconv.Atoi(v)
}

func run(l *load, s *sampler, dur time.Duration, rate float64, every, warm time.Duration, workers int) {
	jobs := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 42))
			for range jobs {
				l.one(r)
			}
		}()
	}
	start := time.Now()
	var samples []sample
	row := func(sm sample, reqs, errs, late, inFlight int64, p50, p99 float64, secs float64) {
		g := "n/a"
		if sm.goroutines >= 0 {
			g = strconv.Itoa(sm.goroutines)
		}
		rps := 0.0
		if secs > 0 {
			rps = float64(reqs) / secs
		}
		fmt.Printf("| %6.0f | %7.1f | %6d | %5d | %9d | %7.1f | %7.1f | %8.1f | %5d | %10s |\n",
			sm.t.Seconds(), rps, errs, late, inFlight, p50, p99, sm.rss, sm.fds, g)
	}
	fmt.Printf("soak: %s at %.0f req/s; sampling every %s; the first %s are warm-up\n\n", dur, rate, every, warm)
	// late: requests not sent because every worker was busy; in flight: at the sample.
	fmt.Println("| t (s) | req/s | errors | late | in flight | p50 ms | p99 ms | RSS MiB | fds | goroutines |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	first, err := s.sample()
	if err != nil {
		log.Fatal(err)
	}
	row(first, 0, 0, 0, 0, 0, 0, 0)

	// Two schedules: request i at start + i/rate (late ones go at once, so
	// the mean rate holds), sample k at start + k*every.
	period := time.Duration(float64(time.Second) / rate)
	end := start.Add(dur)
	var lastOK, lastErrs, lastLate int64
	lastT := start
	sleepUntil := func(t time.Time) {
		if d := time.Until(t); d > 0 {
			time.Sleep(d)
		}
	}
	for i, k := 0, 1; ; {
		nextReq, nextSample := start.Add(time.Duration(i)*period), start.Add(time.Duration(k)*every)
		if !nextSample.After(nextReq) || !nextReq.Before(end) {
			if nextSample.After(end) {
				break
			}
			sleepUntil(nextSample)
			sm, err := s.sample()
			if err != nil {
				fmt.Println("sampling failed:", err)
				break
			}
			sm.t = time.Duration(k) * every
			k++
			samples = append(samples, sm)
			now := time.Now()
			ok, errs, late := l.ok.Load(), l.errs.Load(), l.late.Load()
			p50, p99 := l.takeLatencies()
			row(sm, ok-lastOK, errs-lastErrs, late-lastLate, l.inFlight.Load(), p50, p99, now.Sub(lastT).Seconds())
			lastOK, lastErrs, lastLate, lastT = ok, errs, late, now
			continue
		}
		sleepUntil(nextReq)
		i++
		select {
		case jobs <- struct{}{}:
		default:
			l.late.Add(1) // every worker busy: the proxy is not keeping up
		}
	}
	close(jobs)
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("\nrequests: %d answered and checked, %d errors, %d not sent (every worker busy); %.1f req/s; %.0f MiB down, %.0f MiB up in %.0f s\n",
		l.ok.Load(), l.errs.Load(), l.late.Load(), float64(l.ok.Load())/el.Seconds(),
		float64(l.down.Load())/(1<<20), float64(l.up.Load())/(1<<20), el.Seconds())
	fmt.Printf("requests made: %d\n", l.ok.Load()+l.errs.Load())
	if len(l.errMsgs) > 0 {
		fmt.Println("errors:")
		msgs := make([]string, 0, len(l.errMsgs))
		for m := range l.errMsgs {
			msgs = append(msgs, m)
		}
		sort.Slice(msgs, func(i, j int) bool { return l.errMsgs[msgs[i]] > l.errMsgs[msgs[j]] })
		for i, m := range msgs {
			if i == 10 {
				fmt.Printf("  ... %d more kinds\n", len(msgs)-i)
				break
			}
			fmt.Printf("  %6d × %s\n", l.errMsgs[m], m)
		}
	}
	verdicts(samples, warm)
}

// verdicts compares the largest value of the last third of the samples after
// warm-up with the largest of the first third: flat when within 10% or a
// small absolute slack.
func verdicts(all []sample, warm time.Duration) {
	var ss []sample
	for _, s := range all {
		if s.t > warm {
			ss = append(ss, s)
		}
	}
	fmt.Println()
	if len(ss) < 2 {
		fmt.Printf("verdict: too few samples after warm-up (%d) to judge\n", len(ss))
		return
	}
	k := max(1, len(ss)/3)
	judge := func(name, unit string, slack float64, v func(sample) float64) {
		var a, b float64
		for _, s := range ss[:k] {
			a = max(a, v(s))
		}
		for _, s := range ss[len(ss)-k:] {
			b = max(b, v(s))
		}
		verdict := "growing"
		if b <= a*1.10 || b-a <= slack {
			verdict = "flat"
		}
		fmt.Printf("%-11s %-8s first third max %.1f%s, last third max %.1f%s (flat: within 10%% or %.0f%s)\n",
			name+":", verdict, a, unit, b, unit, slack, unit)
	}
	fmt.Printf("verdict over %d samples after warm-up (thirds of %d):\n", len(ss), k)
	judge("RSS", " MiB", 16, func(s sample) float64 { return s.rss })
	judge("fds", "", 16, func(s sample) float64 { return float64(s.fds) })
	if ss[0].goroutines < 0 {
		fmt.Printf("%-11s n/a (phonehome run has no --debug-listen)\n", "goroutines:")
	} else {
		judge("goroutines", "", 25, func(s sample) float64 { return float64(s.goroutines) })
	}
}
