package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"phonehome/internal/flow"
)

// Open says what is wrong with a path and what to do; only a file that is
// not SQLite is asked whether it is one.
func TestOpenErrors(t *testing.T) {
	type openCase struct {
		name     string
		setup    func(t *testing.T) string // returns the path to open
		readOnly bool
		is       error    // errors.Is, or nil
		says     []string // all in the message
	}
	cases := []openCase{
		{name: "directory missing", setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope", "s.db") },
			is: fs.ErrNotExist, says: []string{"directory", "does not exist", "mkdir -p"}},
		{name: "directory missing, read-only", readOnly: true, setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope", "s.db") },
			is: fs.ErrNotExist, says: []string{"does not exist", "mkdir -p"}},
		{name: "file missing, read-only", readOnly: true, setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "s.db") },
			is: fs.ErrNotExist, says: []string{"no such file", "reading creates nothing"}},
		{name: "path is a directory", setup: func(t *testing.T) string { return t.TempDir() },
			says: []string{"is a directory", "give a file path", "phonehome.db"}},
		{name: "path is a directory, read-only", readOnly: true, setup: func(t *testing.T) string { return t.TempDir() },
			says: []string{"is a directory"}},
		{name: "parent is a file", setup: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "f")
			os.WriteFile(p, nil, 0o644)
			return filepath.Join(p, "s.db")
		}, says: []string{"is not a directory"}},
		{name: "not SQLite", setup: notSQLite, says: []string{"not a SQLite database", "is it a SQLite file?"}},
		{name: "not SQLite, read-only", readOnly: true, setup: notSQLite, says: []string{"is it a SQLite file?"}},
		{name: "read-only directory", setup: func(t *testing.T) string { return filepath.Join(readOnlyDir(t, false), "s.db") },
			is: ErrReadOnly, says: []string{"read-only", "cannot create it"}},
		{name: "read-only file", setup: readOnlyFile,
			is: ErrReadOnly, says: []string{"read-only", "open the store read-only", "to read it"}},
	}
	if os.Geteuid() != 0 { // file modes stop only others than root
		cases = append(cases,
			openCase{name: "directory read-only, file writable", setup: func(t *testing.T) string {
				dir := t.TempDir()
				path, _ := evidence(t, dir)
				os.Chmod(dir, 0o555)
				t.Cleanup(func() { os.Chmod(dir, 0o755) })
				return path
			}, is: ErrReadOnly, says: []string{"SQLite keeps its log beside the database", "make the directory writable"}},
			openCase{name: "file unreadable, read-only", readOnly: true, setup: func(t *testing.T) string {
				path, _ := evidence(t, t.TempDir())
				os.Chmod(path, 0)
				return path
			}, is: fs.ErrPermission, says: []string{"cannot read it", "permission denied"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.setup(t)
			st, err := Open(context.Background(), path, Options{ReadOnly: c.readOnly})
			if err == nil {
				st.Close()
				t.Fatal("opened")
			}
			msg := err.Error()
			for _, s := range c.says {
				if !strings.Contains(msg, s) {
					t.Errorf("%q does not say %q", msg, s)
				}
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("%q is not %v", msg, c.is)
			}
			if !strings.HasPrefix(c.name, "not SQLite") && strings.Contains(msg, "SQLite file") {
				t.Errorf("%q asks whether the file is SQLite", msg)
			}
			if !strings.Contains(msg, path) {
				t.Errorf("%q does not name %s", msg, path)
			}
		})
	}
}

func notSQLite(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "x.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not sqlite, it is a text file. ", 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readOnlyDir returns a directory that cannot be written: a read-only tmpfs
// for root, whom file modes do not stop, else mode 0555. With withStore it
// holds a store, written before the directory became read-only.
func readOnlyDir(t *testing.T, withStore bool) string {
	t.Helper()
	var dir string
	if os.Geteuid() == 0 {
		dir = mountTmpfs(t, 4<<20)
	} else {
		dir = filepath.Join(t.TempDir(), "ro")
		os.Mkdir(dir, 0o755)
	}
	if withStore {
		evidence(t, dir)
	}
	if os.Geteuid() == 0 {
		remount(t, dir, true)
	} else {
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	}
	return dir
}

// readOnlyFile returns a store that cannot be written: on a read-only tmpfs
// for root, else of mode 0444.
func readOnlyFile(t *testing.T) string {
	t.Helper()
	if os.Geteuid() == 0 {
		return filepath.Join(readOnlyDir(t, true), "evidence.db")
	}
	path, _ := evidence(t, t.TempDir())
	os.Chmod(path, 0o444)
	return path
}

// countFlows returns how many flows the session holds and checks that no
// sequence number is there twice.
func countFlows(t *testing.T, st *Store, sess Session) int {
	t.Helper()
	seen := map[int]bool{}
	err := st.Flows(context.Background(), sess, func(f *flow.Flow) error {
		if seen[f.Seq] {
			t.Errorf("flow %d stored twice", f.Seq)
		}
		seen[f.Seq] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(seen)
}

// A write transaction held by another connection makes Add fail with
// ErrLocked after LockTimeout, leaving nothing behind; once it ends, the same
// flows are stored, once.
func TestWriterLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := Open(ctx, path, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, _ := st.CreateSession(ctx, "s", time.Now(), "test")
	w := st.Writer(ctx, sess)
	for i := 1; i <= 3; i++ {
		w.Add(bodyFlow(i, telemetry(1000, uint64(i)), nil))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}

	other, err := sql.Open("sqlite", uri(path)+"?_pragma=busy_timeout(100)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lock, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	retry := []*flow.Flow{bodyFlow(4, telemetry(1000, 4), nil), bodyFlow(5, nil, nil)}
	for attempt := 0; attempt < 2; attempt++ { // and again, still locked
		start := time.Now()
		err := w.Add(retry[0])
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "store flow 4") || !strings.Contains(err.Error(), "another program") {
			t.Fatalf("Add while another connection holds the lock: %v", err)
		}
		if d := time.Since(start); d < 100*time.Millisecond || d > 3*time.Second {
			t.Errorf("Add waited %v for the lock; LockTimeout is 100ms", d)
		}
		if w.Pending() != 0 || retry[0].ID != 0 {
			t.Errorf("after a failed Add: %d pending, ID %d", w.Pending(), retry[0].ID)
		}
	}
	if _, err := st.CreateSession(ctx, "t", time.Now(), ""); !errors.Is(err, ErrLocked) {
		t.Errorf("CreateSession while locked: %v", err)
	}
	if _, err := lock.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	for _, f := range retry {
		if err := w.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countFlows(t, st, sess); n != 5 {
		t.Errorf("%d flows stored, want 5", n)
	}
}

const killEnv = "PHONEHOME_STORE_TEST_WRITE_UNTIL_KILLED"

// killFlow is the flow a killed writer stores as its seq'th: bodies of
// sizes from a few bytes to 12 KiB, compressed and not.
func killFlow(seq int) *flow.Flow {
	n := seq % 13 * 1000
	if seq%2 == 0 {
		return bodyFlow(seq, telemetry(n, uint64(seq)), nil)
	}
	return bodyFlow(seq, noise(n, uint64(seq)), telemetry(n/2, uint64(seq)))
}

// A writer killed (SIGKILL) in the middle of a batch loses nothing it had
// committed: a child process, this test binary again, stores flows without
// pause and commits every 200 ms, printing how many flows it has committed;
// it is killed at some point after its fifth commit, and the store opens
// cleanly and holds at least every flow reported, each whole and once, with
// no gap.
func TestKilledWriterKeepsCommittedFlows(t *testing.T) {
	if path := os.Getenv(killEnv); path != "" {
		writeUntilKilled(path)
		return
	}
	if testing.Short() {
		t.Skip("runs a child process for a few seconds")
	}
	path := filepath.Join(t.TempDir(), "s.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterKeepsCommittedFlows$", "-test.count=1")
	cmd.Env = append(os.Environ(), killEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reported, commits := 0, 0
	sc := bufio.NewScanner(out)
	for sc.Scan() { // what the child printed before it died counts too
		n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "committed "))
		if err != nil {
			t.Errorf("child: %s", sc.Text())
			continue
		}
		reported = n
		if commits++; commits == 5 {
			time.Sleep(time.Duration(time.Now().UnixNano()%150) * time.Millisecond) // somewhere in a batch
			cmd.Process.Kill()
		}
	}
	err = cmd.Wait()
	if commits < 5 {
		t.Fatalf("the child ended after %d commits: %v\n%s", commits, err, stderr.Bytes())
	}
	t.Logf("killed after %d commits, %d flows reported committed", commits, reported)

	ctx := context.Background()
	for _, opts := range []Options{{ReadOnly: true}, {}} {
		st, err := Open(ctx, path, opts)
		if err != nil {
			t.Fatalf("open after the kill (read-only %v): %v", opts.ReadOnly, err)
		}
		var check string
		if err := st.db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			t.Errorf("integrity check: %s %v", check, err)
		}
		sess, err := st.SessionByName(ctx, "killed")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		err = st.Flows(ctx, sess, func(f *flow.Flow) error {
			n++
			want := killFlow(n)
			if f.Seq != n || !bytes.Equal(f.Request.Body.Data, want.Request.Body.Data) || !bytes.Equal(f.Response.Body.Data, want.Response.Body.Data) {
				return fmt.Errorf("flow %d (seq %d) is not the one written", n, f.Seq)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < reported {
			t.Errorf("read-only %v: %d flows in the store; the child had committed %d", opts.ReadOnly, n, reported)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// writeUntilKilled is the child of TestKilledWriterKeepsCommittedFlows.
func writeUntilKilled(path string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	st, err := Open(ctx, path, Options{})
	if err != nil {
		fail(err)
	}
	sess, err := st.CreateSession(ctx, "killed", time.Now(), "test")
	if err != nil {
		fail(err)
	}
	w := st.Writer(ctx, sess)
	last := time.Now()
	for seq := 1; ; seq++ {
		if err := w.Add(killFlow(seq)); err != nil {
			fail(err)
		}
		if time.Since(last) >= 200*time.Millisecond {
			if err := w.Flush(); err != nil {
				fail(err)
			}
			fmt.Printf("committed %d\n", seq)
			last = time.Now()
		}
	}
}
