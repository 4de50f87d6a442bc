package sqlite

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/store/record"
)

// CreateSession starts a session by this machine, as the tests of the engine
// name them.
func (s *Store) CreateSession(ctx context.Context, name string, started time.Time, source string) (Session, error) {
	return s.NewSession(ctx, Session{Name: name, Started: started, Source: source})
}

// undoSensors are the statements that make a database look as it was before
// migration 0007 (sensors and devices).
func undoSensors() []string {
	return []string{"DROP TABLE session_devices", "ALTER TABLE flows DROP COLUMN device", "ALTER TABLE sessions DROP COLUMN sensor"}
}

// A database from before sensors and devices lists its sessions' devices by
// their flows' addresses, read as it is and after its upgrade.
func TestDevicesListedOnUpgrade(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := st.CreateSession(ctx, "old", time.Now(), "test")
	w := st.Writer(ctx, sess)
	for i, client := range []string{"10.0.0.2:4000", "10.0.0.1:4001", "10.0.0.2:4002", "[::ffff:10.0.0.3]:5"} {
		if err := w.Add(&flow.Flow{Seq: i, Client: record.ParseEndpoint(client), Transport: flow.TransportTCP}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, q := range append(undoSensors(), "PRAGMA user_version = 6") {
		if _, err := st.db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	st.Close()
	want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}
	for _, ro := range []bool{true, false} {
		st, err := Open(ctx, path, Options{ReadOnly: ro})
		if err != nil {
			t.Fatal(err)
		}
		got, err := st.SessionByName(ctx, "old")
		st.Close()
		if err != nil || !reflect.DeepEqual(got.Devices, want) || got.Sensor != "" {
			t.Errorf("read-only %v: %+v %v, want devices %v", ro, got, err, want)
		}
	}
}
