package store

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"phonehome/internal/example/exampleflows"
	"phonehome/internal/flow"
	"phonehome/internal/store/pgtest"
)

// exampleFlows are the example phone's flows (both days), detected as
// analyze would: what a sensor stores, bodies, headers and findings.
func exampleFlows(tb testing.TB) []*flow.Flow {
	tb.Helper()
	flows, err := exampleflows.Detected()
	if err != nil {
		tb.Fatal(err)
	}
	return flows
}

// benchEngines are the engines a benchmark compares, in one run: SQLite in a
// file, PostgreSQL on the test server (see pgtest; bench/store-pg.sh runs
// them against a server with PostgreSQL's default durability).
var benchEngines = [...]string{"sqlite", "postgres"}

func benchDSN(b *testing.B, engine string) string {
	if engine == "sqlite" {
		return filepath.Join(b.TempDir(), "bench.db")
	}
	return pgtest.URL(b)
}

// BenchmarkIngest stores the example's flows from one sensor as a live
// capture does (a commit every 1,000 flows) and reports flows/s, for SQLite
// and PostgreSQL side by side.
func BenchmarkIngest(b *testing.B) {
	base := exampleFlows(b)
	for _, e := range benchEngines {
		b.Run(e, func(b *testing.B) {
			ctx := context.Background()
			st, err := Open(ctx, benchDSN(b, e), Options{Sensor: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			sess, err := st.CreateSession(ctx, "bench", time.Now(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			w := st.Writer(ctx, sess)
			flows := make([]flow.Flow, len(base))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f := &flows[i%len(flows)]
				*f = *base[i%len(base)]
				f.ID, f.Seq = 0, i
				f.Client.Addr = netip.AddrFrom4([4]byte{192, 168, 1, byte(20 + i%8)})
				if err := w.Add(f); err != nil {
					b.Fatal(err)
				}
				if i++; i%1000 == 0 {
					if err := w.Flush(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}

// BenchmarkReadLean reads a session of 50,000 flows as a report does, for
// SQLite and PostgreSQL side by side (ns/flow).
func BenchmarkReadLean(b *testing.B) {
	base := exampleFlows(b)
	const n = 50000
	for _, e := range benchEngines {
		b.Run(e, func(b *testing.B) {
			ctx := context.Background()
			st, err := Open(ctx, benchDSN(b, e), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			sess, _ := st.CreateSession(ctx, "bench", time.Now(), "bench")
			w := st.Writer(ctx, sess)
			for i := 0; i < n; i++ {
				f := *base[i%len(base)]
				f.ID, f.Seq = 0, i
				if err := w.Add(&f); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				count := 0
				if err := st.FlowsWith(ctx, sess, ReadOptions{Lean: true}, func(*flow.Flow) error { count++; return nil }); err != nil || count != n {
					b.Fatal(count, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/flow")
		})
	}
}
