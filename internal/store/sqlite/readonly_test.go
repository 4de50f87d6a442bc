package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/store/storetest"
)

// dirState is what a directory holds: each file's name, mode, size, time
// and contents' hash.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range es {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%s %v %d %s %x", e.Name(), fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano), sha256.Sum256(b)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// evidence writes a session of flows with bodies of all sizes into a new
// database in dir, closes it and returns its path and the flows.
func evidence(t *testing.T, dir string) (string, []*flow.Flow) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(dir, "evidence.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := st.CreateSession(ctx, "evidence", time.Now(), "test")
	if err != nil {
		t.Fatal(err)
	}
	in := []*flow.Flow{bodyFlow(1, telemetry(500, 1), telemetry(100<<10, 2)), bodyFlow(2, []byte("id=1"), noise(3000, 3)), storetest.Sample()[1]}
	w := st.Writer(ctx, sess)
	for _, f := range in {
		if err := w.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path, in
}

// readBack checks that st holds the session "evidence" with flows as in.
func readBack(t *testing.T, st *Store, in []*flow.Flow) {
	t.Helper()
	ctx := context.Background()
	ss, err := st.Sessions(ctx)
	if err != nil || len(ss) != 1 || ss[0].Name != "evidence" || ss[0].Flows != int64(len(in)) {
		t.Fatalf("sessions %+v, %v", ss, err)
	}
	for _, lean := range []bool{false, true} {
		i := 0
		err := st.FlowsWith(ctx, ss[0], ReadOptions{Lean: lean}, func(f *flow.Flow) error {
			want := in[i]
			i++
			if f.Transport != want.Transport || (want.Request != nil) != (f.Request != nil) {
				t.Errorf("lean %v: flow %d read back as %+v", lean, i, f)
				return nil
			}
			if want.Request != nil && !bytes.Equal(f.Request.Body.Data, want.Request.Body.Data) {
				t.Errorf("lean %v: flow %d: request body differs", lean, i)
			}
			if !lean && want.Response != nil && !bytes.Equal(f.Response.Body.Data, want.Response.Body.Data) {
				t.Errorf("flow %d: response body differs", i)
			}
			return nil
		})
		if err != nil || i != len(in) {
			t.Fatalf("lean %v: %d flows read, %v", lean, i, err)
		}
	}
}

// An archived store, its file and directory made read-only, is read as it
// is: nothing is written, no log or index is created beside it (root, whom
// file modes do not stop, included), and writes fail with ErrReadOnly.
func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name          string
		file, dirMode os.FileMode
	}{
		{"file and directory read-only", 0o444, 0o555},
		{"file mode 0444", 0o444, 0o755},
		{"writable, opened read-only", 0o644, 0o755},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "archive")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path, in := evidence(t, dir)
			if err := os.Chmod(path, c.file); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, c.dirMode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o755) })
			before := dirState(t, dir)
			if strings.Contains(before, "-wal") || strings.Contains(before, "-shm") {
				t.Fatalf("a closed store left its log beside it:\n%s", before)
			}

			st, err := Open(ctx, path, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			readBack(t, st, in)
			if _, err := st.CreateSession(ctx, "more", time.Now(), ""); !errors.Is(err, ErrReadOnly) {
				t.Errorf("CreateSession on a read-only store: %v", err)
			}
			sess, _ := st.SessionByName(ctx, "")
			if err := st.DeleteSession(ctx, sess); !errors.Is(err, ErrReadOnly) {
				t.Errorf("DeleteSession on a read-only store: %v", err)
			}
			w := st.Writer(ctx, sess)
			if err := w.Add(bodyFlow(9, nil, nil)); !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), "opened read-only") {
				t.Errorf("Add on a read-only store: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Errorf("Close of a writer that wrote nothing: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			if after := dirState(t, dir); after != before {
				t.Errorf("reading changed the directory:\nbefore\n%s\nafter\n%s", before, after)
			}

			// Opening such a file for writing says why it cannot be.
			if os.Geteuid() != 0 && c.file&0o200 == 0 {
				_, err := Open(ctx, path, Options{})
				if !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), "open the store read-only") {
					t.Errorf("opening a read-only file for writing: %v", err)
				}
			}
		})
	}
}

// A store being written (its log beside it, flows in the log and not yet in
// the file) is read with what the log holds, and a new read sees what was
// committed since.
func TestOpenReadOnlyBesideAWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "live.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, _ := st.CreateSession(ctx, "evidence", time.Now(), "test")
	w := st.Writer(ctx, sess)
	in := []*flow.Flow{bodyFlow(1, telemetry(5000, 1), nil)}
	w.Add(in[0])
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(ctx, path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	readBack(t, ro, in)
	in = append(in, bodyFlow(2, noise(300, 2), nil))
	w.Add(in[1])
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	readBack(t, ro, in)
}
