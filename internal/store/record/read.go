package record

import (
	"context"
	"sync"

	"phonehome/internal/flow"
)

// Stream reads rows with next on a goroutine of its own, in batches, and
// parses them and calls fn on this one: on a large session the driver's work
// and the parsing take similar time. next fills the row (decompressed) and
// says whether there was one; its error ends the read.
func Stream(ctx context.Context, next func(*Row) (bool, error), p *Parser, fn func(*flow.Flow) error) error {
	const batchSize = 256
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []Row, 8)
	var readErr error
	go func() {
		defer close(batches)
		batch := make([]Row, 0, batchSize)
		for {
			batch = append(batch, Row{})
			var ok bool
			if ok, readErr = next(&batch[len(batch)-1]); readErr != nil {
				return
			}
			if !ok {
				batch = batch[:len(batch)-1]
				break
			}
			if len(batch) == batchSize {
				select {
				case batches <- batch:
				case <-ctx.Done():
					return
				}
				batch = make([]Row, 0, batchSize)
			}
		}
		if len(batch) > 0 {
			select {
			case batches <- batch:
			case <-ctx.Done():
			}
		}
	}()
	var err error
	for batch := range batches {
		for i := 0; i < len(batch) && err == nil; i++ {
			var f *flow.Flow
			if f, err = p.Parse(&batch[i]); err == nil {
				err = fn(f)
			}
		}
		if err != nil {
			cancel()
			for range batches { // let the reader stop
			}
			return err
		}
	}
	return readErr
}

// Chunks reads the rows with ids lo to hi on several connections at once:
// the range is cut into chunks of chunk ids, read by readers goroutines (the
// driver's work is most of the cost, and one reader keeps one core busy)
// with read, which returns a chunk's rows decompressed, and handed to fn in
// order, on this goroutine, after parsing. At most ahead chunks are in
// memory.
func Chunks(ctx context.Context, lo, hi, chunk int64, readers, ahead int, read func(ctx context.Context, from, to int64) ([]Row, error), p *Parser, fn func(*flow.Flow) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := int((hi-lo)/chunk + 1)
	type result struct {
		rows []Row
		err  error
	}
	outs := make([]chan result, n)
	for i := range outs {
		outs[i] = make(chan result, 1)
	}
	tokens := make(chan struct{}, ahead)
	jobs := make(chan int)
	go func() { // chunks are handed out in order, each once a token is free
		defer close(jobs)
		for i := 0; i < n; i++ {
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				from := lo + int64(i)*chunk
				rows, err := read(ctx, from, min(from+chunk-1, hi))
				outs[i] <- result{rows, err}
			}
		}()
	}
	defer wg.Wait()
	for i := 0; i < n; i++ {
		var res result
		select {
		case res = <-outs[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if res.err != nil {
			return res.err
		}
		for j := range res.rows {
			f, err := p.Parse(&res.rows[j])
			if err == nil {
				err = fn(f)
			}
			if err != nil {
				return err
			}
		}
		<-tokens
	}
	return nil
}

// Rows are the rows of a query, as database/sql and pgx both give them.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// Query runs an engine's query for the rows of a session with ids from to
// to, in id order; done releases them.
type Query func(ctx context.Context, from, to int64) (rows Rows, done func(), err error)

// Read reads the rows of a session with ids lo to hi (as query selects
// them: "id, FlowColumns", or lean "id, LeanColumns") and calls fn with each
// flow in order, on this goroutine. With chunk > 0 the range is read in
// chunks of that many ids on two connections at once (a lean read of a
// large session: the driver's work is most of the cost, and one reader keeps
// one core busy), else in one query whose rows are parsed beside the reader.
// An error of fn is returned as it is; any other is passed through wrap.
func Read(ctx context.Context, lo, hi int64, lean bool, chunk int64, c *Codec, query Query, wrap func(error) error, fn func(*flow.Flow) error) error {
	p := NewParser(lean)
	var fnErr error
	call := func(f *flow.Flow) error { fnErr = fn(f); return fnErr }
	scan := func(rows Rows, r *Row) error {
		if err := rows.Scan(r.Targets(lean)...); err != nil {
			return err
		}
		return r.Decompress(c)
	}
	var err error
	if chunk > 0 {
		err = Chunks(ctx, lo, hi, chunk, 2, 6, func(ctx context.Context, from, to int64) ([]Row, error) {
			rows, done, err := query(ctx, from, to)
			if err != nil {
				return nil, err
			}
			defer done()
			var out []Row
			for rows.Next() {
				out = append(out, Row{})
				if err := scan(rows, &out[len(out)-1]); err != nil {
					return nil, err
				}
			}
			return out, rows.Err()
		}, p, call)
	} else {
		rows, done, qerr := query(ctx, lo, hi)
		if qerr != nil {
			return wrap(qerr)
		}
		defer done()
		err = Stream(ctx, func(r *Row) (bool, error) {
			if !rows.Next() {
				return false, rows.Err()
			}
			return true, scan(rows, r)
		}, p, call)
	}
	if err != nil && (fnErr == nil || err != fnErr) {
		return wrap(err)
	}
	return err
}
