package drill

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// A stale TMPDIR/pgb-drill-*/data/postmaster.pid (a drill killed by a reboot: /tmp is
// on disk on Debian 12) whose pid now belongs to another postgres (the production
// server, parent systemd) is not a leftover drill: its stop command would signal the
// production postmaster. A leftover is a postgres running on that data directory.
func TestDrillAfterARebootDoesNotOfferToStopAnotherPostgresWithTheStalePid(t *testing.T) {
	tmp := t.TempDir()
	// "production": a process named postgres, running elsewhere, parent not pgb
	bin := filepath.Join(t.TempDir(), "postgres")
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	b, _ := os.ReadFile(sleep)
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	prod := exec.Command(bin, "600")
	prod.Dir = t.TempDir() // its data directory
	if err := prod.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = prod.Process.Kill(); _ = prod.Wait() }()
	stale := filepath.Join(tmp, "pgb-drill-123", "data")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(prod.Process.Pid)
	if err := os.WriteFile(filepath.Join(stale, "postmaster.pid"), []byte(pid+"\n"+stale+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := findLeftovers(tmp, "", 0, orphanedPostgres); len(got) != 0 {
		t.Fatalf("reported as a leftover drill: %s", got[0])
	}
}

// The server of a killed drill, working in its data directory, is still found.
func TestDrillAfterAKilledDrillFindsThePostgresWorkingInItsDataDirectory(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "pgb-drill-456", "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "postgres")
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	b, _ := os.ReadFile(sleep)
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(bin, "600")
	srv.Dir = data
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	pid := strconv.Itoa(srv.Process.Pid)
	if err := os.WriteFile(filepath.Join(data, "postmaster.pid"), []byte(pid+"\n"+data+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := findLeftovers(tmp, "", 0, orphanedPostgres); len(got) != 1 || got[0].Pid != srv.Process.Pid {
		t.Fatalf("findLeftovers = %+v, want the server working in %s", got, data)
	}
}
