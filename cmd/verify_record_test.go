package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A verify that ran leaves its outcome in the repository, which pgb status shows; a
// verify of a directory that is no repository leaves nothing there.
func TestVerifyIsRecordedAndStatusShowsIt(t *testing.T) {
	isolate(t)
	repo, _ := pushedRepo(t)
	if r := pgb(t, "verify", "--repo", repo, "--wal"); r.code != 0 {
		t.Fatalf("verify: %+v", r)
	}
	recs, _ := filepath.Glob(filepath.Join(repo, "verifies", "*-ok.json"))
	if len(recs) != 1 {
		t.Fatalf("verify records: %v", recs)
	}
	r := pgb(t, "status", "--repo", repo, "--json")
	var doc struct {
		Verifies struct {
			Last *struct {
				OK    bool   `json:"ok"`
				Scope string `json:"scope"`
			} `json:"last"`
		} `json:"verifies"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if l := doc.Verifies.Last; l == nil || !l.OK || l.Scope != "backups and WAL" {
		t.Errorf("status shows the last verify as %+v", l)
	}
	if r := pgb(t, "status", "--repo", repo); !strings.Contains(r.stdout, "Last verify: passed") {
		t.Errorf("status text:\n%s", r.stdout)
	}

	// A mistyped --backup verified nothing: no record, the last verify stays as it was.
	if r := pgb(t, "verify", "--repo", repo, "--backup", "20991231T000000Z"); r.code == 0 {
		t.Fatalf("verify of a backup that does not exist: %+v", r)
	}
	if failed, _ := filepath.Glob(filepath.Join(repo, "verifies", "*-failed.json")); len(failed) != 0 {
		t.Errorf("a mistyped --backup was recorded as a failed verify: %v", failed)
	}

	empty := t.TempDir()
	_ = pgb(t, "verify", "--repo", empty)
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("verify of an empty directory wrote %v into it", ents)
	}
}
