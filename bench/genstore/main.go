// Command genstore writes a phonehome database with one large session for the
// report benchmark: the example phone's flows (both days, detected as analyze
// would) copied until the session holds -n flows, spread over 8 devices and
// 24 hours, each HTTP request given a fresh nonce in its URL so that the
// report's identifier table sees as many one-off values as real traffic has.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"os"
	"time"

	"phonehome/internal/example/exampleflows"
	"phonehome/internal/store"
)

func main() {
	n := flag.Int("n", 1_000_000, "flows to write")
	out := flag.String("o", "report-bench.db", "database to create: a SQLite file, or a postgres:// URL of a database to add the session to")
	flag.Parse()
	if _, err := os.Stat(*out); err == nil {
		log.Fatalf("%s exists: remove it first", *out)
	}
	base, err := exampleflows.Detected()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, *out, store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	sess, err := st.CreateSession(ctx, "bench", time.Now(), fmt.Sprintf("%d copies of the example", *n/len(base)+1))
	if err != nil {
		log.Fatal(err)
	}
	w := st.Writer(ctx, sess)
	rng := rand.New(rand.NewPCG(1, 2))
	day := base[0].Start
	started := time.Now()
	for i := 0; i < *n; i++ {
		f := *base[i%len(base)]
		shift := time.Duration(rng.Int64N(int64(24 * time.Hour)))
		f.ID = 0
		f.Start, f.End = day.Add(shift), day.Add(shift+f.End.Sub(f.Start))
		f.Client.Addr = netip.AddrFrom4([4]byte{192, 168, 1, byte(20 + i%8)})
		if f.Request != nil {
			r := *f.Request
			sep := "?"
			if bytes.ContainsRune([]byte(r.URL), '?') {
				sep = "&"
			}
			r.URL += fmt.Sprintf("%snonce=%016x", sep, rng.Uint64())
			f.Request = &r
		}
		if err := w.Add(&f); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	if err := st.Close(); err != nil {
		log.Fatal(err)
	}
	size := "" // of a file; a server's database is not one
	if fi, err := os.Stat(*out); err == nil {
		size = fmt.Sprintf(", %.0f MiB", float64(fi.Size())/(1<<20))
	}
	fmt.Printf("wrote %d flows (%d distinct) to %s%s, in %s\n", *n, len(base), st.Where(), size, time.Since(started).Round(time.Second))
}
