package policy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"phonehome/internal/capture/proxy"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/pipeline"
	"phonehome/internal/policy"
)

// keepAliveRate is requests per second, one at a time over a kept
// connection through the proxy, for d, with the policy in force.
func keepAliveRate(tb testing.TB, pol policy.Policy, d time.Duration) float64 {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	pl := pipeline.New(pipeline.Options{Policy: pol, Queue: true})
	plDone := make(chan error, 1)
	go func() { plDone <- pl.Run(context.Background()) }()
	p := proxy.New(proxy.Options{Handler: pl})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Serve(ctx, ln); close(done) }()
	defer func() { cancel(); <-done; pl.Close(); <-plDone }()
	pu, _ := url.Parse("http://" + ln.Addr().String())
	tr := &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	n := 0
	for start := time.Now(); time.Since(start) < d; n++ {
		resp, err := c.Get(srv.URL + "/")
		if err != nil {
			tb.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			tb.Fatal(resp.Status)
		}
	}
	return float64(n) / d.Seconds()
}

// BenchmarkBlockTrackersKeepAlive measures the proxy's keep-alive rate with
// the block-trackers preset in force (its hosts looked up on every request)
// and without a policy, in the same run: the goal is at least 90% of the rate
// without one (go test -run ^$ -bench BlockTrackersKeepAlive ./internal/policy).
func BenchmarkBlockTrackersKeepAlive(b *testing.B) {
	rs, _ := policy.Preset("block-trackers")
	eng := policy.NewEngine(rs, policy.Options{Known: trackers.Builtin()})
	for _, c := range []struct {
		name string
		pol  policy.Policy
	}{{"none", nil}, {"block-trackers", eng}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportMetric(keepAliveRate(b, c.pol, time.Second), "req/s")
		})
	}
}
