package netctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// fakeSys is a /proc/sys with the parameters phonehome changes.
func fakeSys(t *testing.T) string {
	dir := t.TempDir()
	for name, v := range map[string]string{"net/ipv4/ip_forward": "0\n", "net/ipv4/conf/all/send_redirects": "1\n"} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(v), 0o644)
	}
	old := procSys
	procSys = dir
	t.Cleanup(func() { procSys = old })
	return dir
}

func read(t *testing.T, sys, name string) string {
	b, err := os.ReadFile(filepath.Join(sys, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSetupRestores(t *testing.T) {
	sys := fakeSys(t)
	dir := t.TempDir()
	s, restored, err := Begin(dir)
	if err != nil || len(restored) != 0 {
		t.Fatal(err, restored)
	}
	if err := s.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sysctl("net/ipv4/conf/all/send_redirects", "0"); err != nil {
		t.Fatal(err)
	}
	// the record is on disk before the change
	var st State
	b, _ := os.ReadFile(StateFile(dir))
	if json.Unmarshal(b, &st) != nil || st.Sysctls["net/ipv4/ip_forward"] != "0" || st.Sysctls["net/ipv4/conf/all/send_redirects"] != "1" {
		t.Fatalf("state file: %s", b)
	}
	if read(t, sys, "net/ipv4/ip_forward") != "1" {
		t.Fatal("not changed")
	}
	if err := s.Restore(); err != nil {
		t.Fatal(err)
	}
	if read(t, sys, "net/ipv4/ip_forward") != "0" || read(t, sys, "net/ipv4/conf/all/send_redirects") != "1" {
		t.Error("not restored")
	}
	if _, err := os.Stat(StateFile(dir)); !os.IsNotExist(err) {
		t.Error("state file left behind")
	}
}

// A run killed after its changes leaves a state file; the next Begin undoes them.
func TestRecoverAfterCrash(t *testing.T) {
	sys := fakeSys(t)
	dir := t.TempDir()
	s, _, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Sysctl("net/ipv4/ip_forward", "1")
	// a different, dead process wrote it
	st := s.state
	st.PID = 1 << 30
	b, _ := json.Marshal(st)
	os.WriteFile(StateFile(dir), b, 0o600)
	_, restored, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(restored) != 1 || read(t, sys, "net/ipv4/ip_forward") != "0" {
		t.Errorf("restored %v; ip_forward %q", restored, read(t, sys, "net/ipv4/ip_forward"))
	}
	os.WriteFile(StateFile(dir), []byte("{not json"), 0o600)
	if _, _, err := Begin(dir); err == nil {
		t.Error("a damaged state file must stop the start and say what to check")
	}
}
