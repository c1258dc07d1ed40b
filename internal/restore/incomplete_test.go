package restore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/faulty"
)

// An interrupted restore (here: a damaged part) leaves its directories marked
// incomplete; running it again with Force clears them and restores.
func TestInterruptedRestoreIsRetriedWithForce(t *testing.T) {
	ctx := context.Background()
	b := takeBackup(t, "none")
	n := -1
	for _, f := range allFiles(t, b.m) {
		if f.Path == bigFile {
			n = f.Part
		}
	}
	key := repo.PartKey(b.m.Name, n)
	info, err := b.st.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	broken := faulty.New(b.st, faulty.Rule{Op: faulty.Get, Key: key, Fault: faulty.Corrupt, Offset: info.Size / 2})
	base := t.TempDir()
	target, newSpc := filepath.Join(base, "pgdata"), filepath.Join(base, "ts")
	spcMap := map[string]string{b.spcDir: newSpc}
	rec := &Recovery{RestoreCommand: "x", Target: Target{Timeline: "latest"}}
	if err := newRestorer(broken, target, spcMap, rec).Run(ctx, b.m); err == nil {
		t.Fatal("restore of a damaged part succeeded")
	}
	for _, d := range []string{target, newSpc} {
		if _, err := os.Stat(filepath.Join(d, IncompleteMarker)); err != nil {
			t.Fatalf("the interrupted restore left %s unmarked: %v", d, err)
		}
	}

	// Without --force: refused, pointing at --force, nothing changed.
	before := snapshot(t, base)
	err = newRestorer(b.st, target, spcMap, rec).Run(ctx, b.m)
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("retry without force = %v, want ErrNotEmpty suggesting --force", err)
	}
	if err := CheckTarget(target, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("CheckTarget without force = %v, want a hint at --force", err)
	}
	if after := snapshot(t, base); after != before {
		t.Errorf("a refused retry changed the directories")
	}

	// With --force: cleared and restored, no marker left.
	if err := CheckTarget(target, true); err != nil {
		t.Fatalf("CheckTarget with force on an incomplete restore: %v", err)
	}
	r := newRestorer(b.st, target, spcMap, rec)
	r.Opt.Force = true
	if err := r.Run(ctx, b.m); err != nil {
		t.Fatalf("restore --force: %v", err)
	}
	for _, d := range []string{target, newSpc} {
		if _, err := os.Stat(filepath.Join(d, IncompleteMarker)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a complete restore left the marker in %s: %v", d, err)
		}
	}
	if ctl, err := pg.ReadControl(target); err != nil || ctl.SystemID != testSystemID {
		t.Errorf("pg_control after restore --force: %+v, %v", ctl, err)
	}
	want, _ := os.ReadFile(filepath.Join(b.dataDir, bigFile))
	if got, err := os.ReadFile(filepath.Join(target, bigFile)); err != nil || string(got) != string(want) {
		t.Errorf("%s after restore --force: %v", bigFile, err)
	}
}

// --force clears only what pgb itself left incomplete: a directory without the
// marker is refused and left untouched, and so is a directory that a marker lists
// but that has no marker of its own.
func TestForceRefusesADirectoryPgbDidNotLeaveIncomplete(t *testing.T) {
	ctx := context.Background()
	b := takeBackup(t, "none")
	base := t.TempDir()
	target, newSpc, other := filepath.Join(base, "pgdata"), filepath.Join(base, "ts"), filepath.Join(base, "precious")
	writeTree(t, target, map[string][]byte{"PG_VERSION": []byte("15\n"), "base/1/1259": []byte("real data")})
	writeTree(t, other, map[string][]byte{"keep": []byte("precious")})
	before := snapshot(t, base)
	if err := CheckTarget(target, true); !errors.Is(err, ErrNotIncomplete) || !strings.Contains(err.Error(), target) {
		t.Errorf("CheckTarget with force on a foreign directory = %v, want ErrNotIncomplete naming it", err)
	}
	r := newRestorer(b.st, target, map[string]string{b.spcDir: newSpc}, nil)
	r.Opt.Force = true
	if err := r.Run(ctx, b.m); !errors.Is(err, ErrNotIncomplete) {
		t.Errorf("restore --force into a foreign directory = %v, want ErrNotIncomplete", err)
	}
	if after := snapshot(t, base); after != before {
		t.Errorf("--force changed a directory pgb did not leave incomplete:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// A marked data directory whose marker lists a directory without its own marker.
	target2 := filepath.Join(base, "pgdata2")
	writeTree(t, target2, map[string][]byte{IncompleteMarker: []byte("tablespace " + other + "\n"), "half": nil})
	r = newRestorer(b.st, target2, map[string]string{b.spcDir: newSpc}, nil)
	r.Opt.Force = true
	if err := r.Run(ctx, b.m); err != nil {
		t.Fatalf("restore --force over a marked directory: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(other, "keep")); err != nil || string(got) != "precious" {
		t.Errorf("--force cleared a listed directory that has no marker of its own: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(target2, "half")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("--force kept a leftover of the incomplete restore: %v", err)
	}
}

// A restore killed after pg_control went into place but before its markers were
// removed leaves a complete data directory that still holds the marker; PostgreSQL
// may have been started on it and taken writes since. --force must never clear it,
// nor a tablespace directory of it: refused, untouched, saying why.
func TestForceRefusesARestoreThatFinished(t *testing.T) {
	ctx := context.Background()
	b := takeBackup(t, "none")
	for _, tc := range []struct {
		name   string
		remove []string          // files taken away from the finished restore
		add    map[string][]byte // files added to it
		want   string            // named in the refusal
	}{
		{name: "pg_control", want: "global/pg_control"},
		{name: "postmaster.pid", remove: []string{"global/pg_control"},
			add: map[string][]byte{"postmaster.pid": []byte("4242\n/var/lib/postgresql/15/main\n")}, want: "postmaster.pid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			target, newSpc := filepath.Join(base, "pgdata"), filepath.Join(base, "ts")
			spcMap := map[string]string{b.spcDir: newSpc}
			rec := &Recovery{RestoreCommand: "x", Target: Target{Timeline: "latest"}}
			r := newRestorer(b.st, target, spcMap, rec)
			if err := r.Run(ctx, b.m); err != nil {
				t.Fatal(err)
			}
			// Killed just before the markers were removed.
			spc := map[uint32]string{b.m.Tablespaces[0].OID: newSpc}
			if err := r.writeMarker(target, b.m.Name, spc); err != nil {
				t.Fatal(err)
			}
			if err := r.writeMarker(newSpc, b.m.Name, nil); err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.remove {
				if err := os.Remove(filepath.Join(target, p)); err != nil {
					t.Fatal(err)
				}
			}
			writeTree(t, target, tc.add)
			before := snapshot(t, base)

			err := CheckTarget(target, true)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), IncompleteMarker) {
				t.Errorf("CheckTarget with force = %v, want a refusal naming %s and the marker", err, tc.want)
			}
			r = newRestorer(b.st, target, spcMap, rec)
			r.Opt.Force = true
			if err := r.Run(ctx, b.m); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("restore --force into a finished restore = %v, want a refusal naming %s", err, tc.want)
			}
			// The same tablespace directory, reached from a restore into another place.
			r = newRestorer(b.st, filepath.Join(base, "other"), spcMap, rec)
			r.Opt.Force = true
			if err := r.Run(ctx, b.m); err == nil || !strings.Contains(err.Error(), newSpc) {
				t.Errorf("restore --force into the finished restore's tablespace = %v, want a refusal naming it", err)
			}
			os.RemoveAll(filepath.Join(base, "other"))
			if after := snapshot(t, base); after != before {
				t.Errorf("--force changed a finished restore")
			}
		})
	}
}
