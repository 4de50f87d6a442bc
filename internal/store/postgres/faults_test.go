package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"phonehome/internal/store/record"
)

// Each failure is the fault it is: what passes is retried by the pipeline
// (a lost server among them), what does not is said as it is.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{&pgconn.PgError{Code: "53100"}, record.ErrFull},
		{&pgconn.PgError{Code: "25006"}, record.ErrReadOnly},
		{&pgconn.PgError{Code: "42501"}, record.ErrReadOnly},
		{&pgconn.PgError{Code: "55P03"}, record.ErrLocked},
		{&pgconn.PgError{Code: "57P01"}, record.ErrUnavailable}, // admin shutdown
		{&pgconn.PgError{Code: "57P03"}, record.ErrUnavailable}, // starting up
		{&pgconn.PgError{Code: "08006"}, record.ErrUnavailable},
		{fmt.Errorf("copy: %w", &pgconn.PgError{Code: "53300"}), record.ErrUnavailable}, // too many connections
		{&pgconn.PgError{Code: "23505"}, nil},                                           // a unique violation is no passing fault
		{&pgconn.PgError{Code: "22P02"}, nil},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, record.ErrUnavailable},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), record.ErrUnavailable},
		{fmt.Errorf("send: %w", syscall.EPIPE), record.ErrUnavailable},
		{pgconn.ErrConnClosed, record.ErrUnavailable},
		{context.DeadlineExceeded, record.ErrUnavailable},
		{context.Canceled, nil},
		{errors.New("cannot encode value"), nil},
		{fmt.Errorf("store: %w", record.ErrReadOnly), record.ErrReadOnly},
	} {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
