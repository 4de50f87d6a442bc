package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/store"
	"phonehome/internal/store/pgtest"
)

// TestMain lets a test run phonehome itself as a child process (to kill it).
func TestMain(m *testing.M) {
	if args := os.Getenv("PHONEHOME_TEST_RUN"); args != "" {
		os.Exit(run(context.Background(), strings.Split(args, "\x1f"), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(pgtest.Main(m)) // a throwaway PostgreSQL for the store's tests
}

// TestKillDuringTraffic: phonehome run is killed with SIGKILL while a device
// keeps sending. After a restart the store opens cleanly and holds every
// flow that completed more than a second before the kill.
func TestKillDuringTraffic(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	dir := t.TempDir()
	db := filepath.Join(dir, "kill.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PHONEHOME_TEST_RUN="+strings.Join([]string{"run", "--listen", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--db", db,
		"--session", "killed", "--ca-dir", filepath.Join(dir, "ca")}, "\x1f"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addrRE := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	sc := bufio.NewScanner(stderr)
	var addr string
	for sc.Scan() {
		if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	if addr == "" {
		t.Fatal("phonehome run did not start")
	}
	go io.Copy(io.Discard, stderr)
	pu, _ := url.Parse("http://" + addr)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 5 * time.Second}
	type sent struct {
		n    int
		done time.Time
	}
	var completed []sent
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		resp, err := client.Get(fmt.Sprintf("%s/track?n=%d&android_id=3b6f1e0a9c2d4f81", up.URL, i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		completed = append(completed, sent{i, time.Now()})
		time.Sleep(2 * time.Millisecond)
	}
	killedAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatalf("the store does not open after a kill: %v", err)
	}
	defer st.Close()
	sess, err := st.SessionByName(context.Background(), "killed")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	if err := st.Flows(context.Background(), sess, func(f *flow.Flow) error {
		if f.Request != nil {
			stored[f.Request.URL] = true
		}
		return nil
	}); err != nil {
		t.Fatalf("reading the session after a kill: %v", err)
	}
	var want, missing int
	for _, c := range completed {
		if killedAt.Sub(c.done) <= time.Second {
			continue
		}
		want++
		if !stored[fmt.Sprintf("%s/track?n=%d&android_id=3b6f1e0a9c2d4f81", up.URL, c.n)] {
			missing++
		}
	}
	if want == 0 || missing > 0 {
		t.Errorf("%d of %d flows completed more than a second before the kill are missing (%d stored in all)", missing, want, len(stored))
	}
}
