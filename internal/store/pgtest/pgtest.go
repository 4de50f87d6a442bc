// Package pgtest gives tests a real PostgreSQL server: the one named by
// $PHONEHOME_TEST_POSTGRES (a postgres:// URL of a server the tests may
// create databases on), or a throwaway cluster it starts itself from the
// server binaries of the machine (Debian's postgresql package), in a
// temporary directory, on a loopback port, stopped and removed when the
// tests end. Where neither is possible the tests that need a server skip,
// saying why.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and URL(t) in a test for a database of its own.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names a server to use instead of a throwaway cluster.
const EnvURL = "PHONEHOME_TEST_POSTGRES"

// Server is a PostgreSQL server tests use.
type Server struct {
	URL     string // of its maintenance database, as a superuser
	cluster *Cluster
	why     string // when there is none: why
	dbs     atomic.Int64
}

// Main runs the tests with a server (see the package doc) and returns the
// exit code.
func Main(m *testing.M) int {
	s := start()
	shared.Store(s)
	code := m.Run()
	if s.cluster != nil {
		s.cluster.Remove()
	}
	return code
}

// shared is the server Main started for the package's tests: TestMain is
// the only way a package's tests share a resource, and this is its handle.
var shared atomic.Pointer[Server]

func start() *Server {
	if u := os.Getenv(EnvURL); u != "" {
		return &Server{URL: u}
	}
	c, err := NewCluster()
	if err != nil {
		return &Server{why: err.Error()}
	}
	return &Server{URL: c.URL, cluster: c}
}

// URL returns the URL of a new, empty database for the test, dropped when
// it ends; the test is skipped when no server can be had.
func URL(t testing.TB) string {
	t.Helper()
	s := shared.Load()
	switch {
	case s == nil:
		t.Fatal("pgtest: call pgtest.Main from the package's TestMain")
		return ""
	case s.URL == "":
		t.Skipf("no PostgreSQL server for this test: %s (set %s to a postgres:// URL, or install Debian's postgresql package and run as root or as a user who may run initdb)", s.why, EnvURL)
	}
	return s.NewDatabase(t)
}

// NewDatabase creates an empty database for the test, dropped when it ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("phonehome_test_%d_%d", os.Getpid(), s.dbs.Add(1))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", s.URL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, s.URL)
		if err != nil {
			return // the server is gone, and its databases with it
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return withDatabase(s.URL, name)
}

func withDatabase(u, db string) string {
	base, query, _ := strings.Cut(u, "?")
	if i := strings.LastIndexByte(base, '/'); i > len("postgres://") {
		base = base[:i]
	}
	out := base + "/" + db
	if query != "" {
		out += "?" + query
	}
	return out
}

// Cluster is a throwaway PostgreSQL cluster in a temporary directory.
type Cluster struct {
	URL    string
	dir    string
	bin    string
	port   int
	as     *user.User // nil: this user
	server *exec.Cmd  // while it runs
	exited chan error
}

// NewCluster initialises and starts a cluster, or says why it cannot.
func NewCluster() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 { // initdb refuses root: run the server as postgres
		if c.as, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root, and there is no postgres user to run the server as: %w", err)
		}
	}
	if c.dir, err = os.MkdirTemp("", "phonehome-pg-"); err != nil {
		return nil, err
	}
	if err := c.init(); err != nil {
		c.Remove()
		return nil, err
	}
	if err := c.Start(); err != nil {
		c.Remove()
		return nil, err
	}
	return c, nil
}

// binDir finds the server's binaries: on PATH, or where Debian puts them.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		return "", errors.New("no PostgreSQL server binaries (initdb) on PATH or in /usr/lib/postgresql/*/bin")
	}
	sort.Strings(found)
	return filepath.Dir(found[len(found)-1]), nil
}

func (c *Cluster) init() error {
	// the directory must be the server user's, and its parents traversable
	if err := os.Chmod(c.dir, 0o755); err != nil {
		return err
	}
	data := filepath.Join(c.dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		return err
	}
	if c.as != nil {
		uid, _ := strconv.Atoi(c.as.Uid)
		gid, _ := strconv.Atoi(c.as.Gid)
		for _, p := range []string{c.dir, data} {
			if err := os.Chown(p, uid, gid); err != nil {
				return err
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	c.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if out, err := c.run("initdb", "-D", data, "-A", "trust", "-U", "ph", "-E", "UTF8", "--locale=C"); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, out)
	}
	c.URL = fmt.Sprintf("postgres://ph@127.0.0.1:%d/postgres?sslmode=disable", c.port)
	return nil
}

// Start starts the server (again) and waits until it takes connections.
// The server is a child of the test process, which it does not outlive
// where the system allows (Linux): a test binary killed or timed out leaves
// no server behind. fsync is off (tests need no durability past the
// machine's own crash), but commits wait for the log: a server stopped at
// once must keep every commit it acknowledged, as a real one does.
func (c *Cluster) Start() error {
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), "-D", filepath.Join(c.dir, "data"), "-k", c.dir, "-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50")
	log, err := os.OpenFile(filepath.Join(c.dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := c.child(cmd); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.server = cmd
	c.exited = make(chan error, 1)
	go func(exited chan error) { exited <- cmd.Wait() }(c.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.URL)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case werr := <-c.exited:
			c.server = nil
			out, _ := os.ReadFile(filepath.Join(c.dir, "log"))
			return fmt.Errorf("postgres exited (%v): %s", werr, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return fmt.Errorf("postgres did not take connections within a minute: %w", err)
		}
	}
}

// Stop stops the server at once (SIGQUIT: immediate shutdown), as a crash
// or a pulled plug would.
func (c *Cluster) Stop() error {
	if c.server == nil {
		return nil
	}
	c.server.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.server.Process.Kill()
		<-c.exited
	}
	c.server = nil
	return nil
}

// Remove stops the server and removes its directory.
func (c *Cluster) Remove() {
	c.Stop()
	os.RemoveAll(c.dir)
}

func (c *Cluster) child(cmd *exec.Cmd) error {
	cmd.Dir = c.dir
	return runAs(cmd, c.as)
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	if err := c.child(cmd); err != nil {
		return nil, err
	}
	return cmd.CombinedOutput()
}
