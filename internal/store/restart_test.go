package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/live"
	"phonehome/internal/pipeline"
	"phonehome/internal/store/pgtest"
)

// A live capture whose PostgreSQL server is stopped in the middle of the run
// (as a crash would: immediate shutdown) goes on capturing; its flows wait,
// the person is told the server is unavailable, and once it is back every
// flow is stored exactly once.
func TestPostgresRestartMidRun(t *testing.T) {
	c, err := pgtest.NewCluster()
	if err != nil {
		t.Skipf("this test restarts a server of its own, and none could be started: %v", err)
	}
	defer c.Remove()
	srv := &pgtest.Server{URL: c.URL}
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	st := open(t, dsn, Options{Sensor: "wg-server"})
	sess, err := st.CreateSession(ctx, "run", time.Now(), "proxy")
	if err != nil {
		t.Fatal(err)
	}
	broker := live.New(live.Options{})
	defer broker.Close()
	notices := broker.Subscribe("notices", 64, func(e live.Event) bool { return e.Kind == live.EventNotice })
	var unavailable atomic.Bool
	pl := pipeline.New(pipeline.Options{Store: st.Writer(ctx, sess), Live: broker, Queue: true, RetryStore: true, FlushEvery: 20 * time.Millisecond,
		StoreAdvice: func(err error) string {
			if errors.Is(err, ErrUnavailable) {
				unavailable.Store(true)
			}
			return ""
		}})
	done := make(chan error, 1)
	go func() { done <- pl.Run(ctx) }()
	send := func(from, to int) {
		for i := from; i < to; i++ {
			pl.Done(&flow.Flow{Source: "proxy", Host: fmt.Sprintf("h%d.example", i), Transport: flow.TransportHTTPS,
				Request: &flow.Request{Method: "GET", URL: fmt.Sprintf("https://h%d.example/", i)}})
			if i%200 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	send(0, 1000)
	time.Sleep(100 * time.Millisecond)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	send(1000, 3500) // more than a batch: the retry must still store each once
	var text string
	select {
	case ev := <-notices.C():
		text = ev.Text
	case <-time.After(10 * time.Second):
		t.Fatal("no notice while the server is down")
	}
	if !unavailable.Load() || !strings.Contains(text, "database server unavailable") || !strings.Contains(text, "start the PostgreSQL server") {
		t.Errorf("the notice must say the server is unavailable and what to do: %q", text)
	}
	if pl.Stats().Waiting == 0 {
		t.Errorf("flows must wait while the server is down: %+v", pl.Stats())
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	send(3500, 4000)
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	hosts := map[string]int{}
	if err := st.Flows(ctx, sess, func(f *flow.Flow) error { hosts[f.Host]++; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 4000 {
		t.Errorf("%d distinct flows stored, want 4000", len(hosts))
	}
	for h, n := range hosts {
		if n != 1 {
			t.Errorf("flow %s stored %d times", h, n)
		}
	}
	if s := pl.Stats(); s.Stored != 4000 || s.Lost != 0 || s.StoreErrors == 0 {
		t.Errorf("stats: %+v", s)
	}
}
