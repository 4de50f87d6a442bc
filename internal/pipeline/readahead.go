package pipeline

import (
	"context"

	"phonehome/internal/flow"
)

// ReadAhead runs produce (reading flows) and consume (reporting them) on two
// goroutines, so that reading the store and analysing overlap. Flows travel
// in batches; an error on either side stops both.
func ReadAhead(ctx context.Context, produce func(emit func(*flow.Flow) error) error, consume func(*flow.Flow) error) error {
	const batch = 256
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan []*flow.Flow, 8)
	errc := make(chan error, 1)
	go func() {
		defer close(ch)
		buf := make([]*flow.Flow, 0, batch)
		err := produce(func(f *flow.Flow) error {
			buf = append(buf, f)
			if len(buf) == batch {
				select {
				case ch <- buf:
				case <-ctx.Done():
					return ctx.Err()
				}
				buf = make([]*flow.Flow, 0, batch)
			}
			return nil
		})
		if err == nil && len(buf) > 0 {
			select {
			case ch <- buf:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		errc <- err
	}()
	var consumeErr error
	for b := range ch {
		if consumeErr != nil {
			continue // drain so the producer can finish
		}
		for _, f := range b {
			if consumeErr = consume(f); consumeErr != nil {
				cancel()
				break
			}
		}
	}
	produceErr := <-errc
	if consumeErr != nil {
		return consumeErr
	}
	return produceErr
}
