package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"phonehome/internal/flow"
)

// mountTmpfs mounts a tmpfs of size bytes for the test, so that a disk can
// be full or read-only for real; it needs root.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs to make the disk full or read-only for real")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): run as root with CAP_SYS_ADMIN to test this fault for real", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// remount makes the tmpfs at dir read-only or writable again. The kernel
// refuses while a file on it is open for writing, for a moment after a
// connection closed.
func remount(t *testing.T, dir string, readOnly bool) {
	t.Helper()
	flags := uintptr(syscall.MS_REMOUNT)
	if readOnly {
		flags |= syscall.MS_RDONLY
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = syscall.Mount("tmpfs", dir, "tmpfs", flags, ""); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("remount %s (read-only %v): %v", dir, readOnly, err)
}

// A full disk makes Add or Flush fail with ErrFull and roll back the open
// batch; once space is freed, the flows of that batch are sent again and
// stored once each, beside those committed before.
func TestWriterDiskFull(t *testing.T) {
	ctx := context.Background()
	dir := mountTmpfs(t, 2<<20)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 512<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, _ := st.CreateSession(ctx, "s", time.Now(), "test")
	w := st.Writer(ctx, sess)
	var committed, batch []*flow.Flow
	var failed error
	for seq := 1; failed == nil && seq < 200; seq++ {
		f := bodyFlow(seq, noise(60<<10, uint64(seq)), nil) // does not compress
		batch = append(batch, f)
		if failed = w.Add(f); failed == nil && len(batch) == 4 {
			if failed = w.Flush(); failed == nil {
				committed, batch = append(committed, batch...), nil
			}
		}
	}
	if !errors.Is(failed, ErrFull) || !strings.Contains(failed.Error(), "free space") {
		t.Fatalf("writing to a full disk: %v", failed)
	}
	t.Logf("%d flows committed, then: %v", len(committed), failed)
	if len(committed) == 0 {
		t.Fatal("the disk was full before the first commit")
	}
	if w.Pending() != 0 {
		t.Errorf("%d flows pending after a failed batch", w.Pending())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, f := range batch {
		if err := w.Add(f); err != nil {
			t.Fatalf("Add again after space was freed: %v", err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := len(committed) + len(batch)
	if n := countFlows(t, st, sess); n != want {
		t.Errorf("%d flows stored, want %d", n, want)
	}
	var check string
	if err := st.db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity check: %s %v", check, err)
	}
}

// A file system remounted read-only makes Add fail with ErrReadOnly; once
// it is writable again, the same flows are stored, once.
func TestWriterReadOnlyFileSystem(t *testing.T) {
	ctx := context.Background()
	dir := mountTmpfs(t, 8<<20)
	st, err := Open(ctx, filepath.Join(dir, "s.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Connections close once used, so that no file stays open for writing
	// and the kernel lets the file system be remounted read-only.
	st.db.SetMaxIdleConns(0)
	sess, _ := st.CreateSession(ctx, "s", time.Now(), "test")
	w := st.Writer(ctx, sess)
	for seq := 1; seq <= 3; seq++ {
		w.Add(bodyFlow(seq, telemetry(2000, uint64(seq)), nil))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	st.checkpoints.Wait()

	remount(t, dir, true)
	retry := []*flow.Flow{bodyFlow(4, telemetry(2000, 4), nil), bodyFlow(5, nil, nil)}
	for attempt := 0; attempt < 2; attempt++ {
		err := w.Add(retry[0])
		if !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), "read-only file system") {
			t.Fatalf("Add on a read-only file system: %v", err)
		}
	}
	if _, err := st.CreateSession(ctx, "t", time.Now(), ""); !errors.Is(err, ErrReadOnly) {
		t.Errorf("CreateSession on a read-only file system: %v", err)
	}
	remount(t, dir, false)
	for _, f := range retry {
		if err := w.Add(f); err != nil {
			t.Fatalf("Add again once writable: %v", err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countFlows(t, st, sess); n != 5 {
		t.Errorf("%d flows stored, want 5", n)
	}
}

// A store whose log holds flows not yet in the file, on a file system where
// the log's index cannot be created, is not read without them: the error
// says what to do.
func TestOpenReadOnlyLogWithoutIndex(t *testing.T) {
	ctx := context.Background()
	dir := mountTmpfs(t, 4<<20)
	src := filepath.Join(t.TempDir(), "live.db")
	st, err := Open(ctx, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, _ := st.CreateSession(ctx, "s", time.Now(), "test")
	w := st.Writer(ctx, sess)
	w.Add(bodyFlow(1, nil, nil))
	w.Flush()
	for _, name := range []string{"live.db", "live.db-wal"} { // copied while written, without the index
		b, err := os.ReadFile(filepath.Join(filepath.Dir(src), name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	remount(t, dir, true)
	_, err = Open(ctx, filepath.Join(dir, "live.db"), Options{ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "holds flows not yet in the database file") || !strings.Contains(err.Error(), "copy the database and its -wal") {
		t.Errorf("read-only open of a log without its index on a read-only file system: %v", err)
	}
}
