package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
	"github.com/pgb-project/pgb/internal/wal"
)

// TestVerifyPassesOnAFreshBackupAndNamesEachDamage: a user takes a backup while WAL is
// archived and runs pgb verify --wal, which passes; then a flipped byte in a part, a
// deleted part and a deleted WAL segment each make verify fail, naming the object.
func TestVerifyPassesOnAFreshBackupAndNamesEachDamage(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	src.Exec(t, "CREATE TABLE big AS SELECT g, md5(g::text) FROM generate_series(1, 100000) g")
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast", "--compression", "none", "--part-size", "4MiB")
	for i := 0; i < 3; i++ {
		src.Exec(t, "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
		src.WaitArchived(t, src.SwitchWAL(t), 30*time.Second)
	}

	r := mustPGB(t, "", nil, "verify", "--repo", repo, "--wal")
	if !strings.Contains(r.stdout, "verify passed: 1 backup(s)") || strings.Contains(r.stdout, "PROBLEM") {
		t.Fatalf("verify --wal on a clean repository: %s", r)
	}
	t.Logf("pgb verify --wal:\n%s", r.stdout)
	var doc struct {
		OK      bool `json:"ok"`
		Checked struct {
			Files       int `json:"files"`
			WALSegments int `json:"wal_segments"`
		} `json:"checked"`
		Problems []struct{ Object, Problem string } `json:"problems"`
	}
	r = mustPGB(t, "", nil, "verify", "--repo", repo, "--wal", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || !doc.OK || doc.Checked.Files == 0 ||
		doc.Checked.WALSegments < 4 || len(doc.Problems) != 0 {
		t.Fatalf("verify --wal --json (%v): %s", err, r)
	}

	// A flipped byte in the largest part.
	parts, _ := filepath.Glob(filepath.Join(repo, "backups", "*", "part-*"))
	if len(parts) < 2 {
		t.Fatalf("parts: %v", parts)
	}
	sort.Slice(parts, func(i, j int) bool { return fileSize(t, parts[i]) > fileSize(t, parts[j]) })
	largest := parts[0]
	data, err := os.ReadFile(largest)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	writeFile(t, largest, data)
	t.Logf("pgb verify, a byte flipped:\n%s", wantVerifyFails(t, repo, rel(t, repo, largest), "checksum mismatch").stdout)
	data[len(data)/2] ^= 0x40
	writeFile(t, largest, data)
	mustPGB(t, "", nil, "verify", "--repo", repo)

	// A missing part.
	if err := os.Rename(parts[1], parts[1]+".away"); err != nil {
		t.Fatal(err)
	}
	wantVerifyFails(t, repo, rel(t, repo, parts[1]), "missing")
	if err := os.Rename(parts[1]+".away", parts[1]); err != nil {
		t.Fatal(err)
	}
	mustPGB(t, "", nil, "verify", "--repo", repo)

	// A missing WAL segment after the backup's stop segment, before the newest.
	var rows []struct {
		StopWAL string `json:"stop_wal"`
	}
	if err := json.Unmarshal([]byte(mustPGB(t, "", nil, "backup-list", "--repo", repo, "--json").stdout), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("backup-list: %v %v", err, rows)
	}
	segs, _ := filepath.Glob(filepath.Join(repo, "wal", "*", "000000010000000000000*"))
	var after []string
	for _, s := range segs {
		if b := filepath.Base(s); len(b) == 24 && b > rows[0].StopWAL {
			after = append(after, s)
		}
	}
	sort.Strings(after)
	if len(after) < 2 {
		t.Fatalf("segments after the backup: %v", after)
	}
	gone := after[0]
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	r = pgb(t, "", nil, "verify", "--repo", repo, "--wal")
	if r.code != 1 || !strings.Contains(r.stdout, "PROBLEM  "+rel(t, repo, gone)+": missing from the archive: WAL segment "+filepath.Base(gone)) ||
		!strings.Contains(r.stdout, "verify FAILED: 1 problem(s)") {
		t.Fatalf("verify --wal with %s deleted: %s", filepath.Base(gone), r)
	}
	t.Logf("pgb verify --wal, a segment deleted:\n%s", r.stdout)
	// The backup's own WAL is whole: without --wal verify passes.
	mustPGB(t, "", nil, "verify", "--repo", repo)
}

// wantVerifyFails runs pgb verify and checks that it fails, naming object.
func wantVerifyFails(t *testing.T, repo, object, what string) result {
	t.Helper()
	r := pgb(t, "", nil, "verify", "--repo", repo)
	if r.code != 1 || !strings.Contains(r.stdout, "PROBLEM  "+object) || !strings.Contains(r.stdout, what) ||
		!strings.Contains(r.stdout, "verify FAILED") {
		t.Fatalf("verify with %s damaged: %s", object, r)
	}
	return r
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func rel(t *testing.T, root, p string) string {
	t.Helper()
	r, err := filepath.Rel(root, p)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(r)
}

// TestVerifyFollowsAPromotedCopysTimeline: a restored copy promoted to timeline 2
// archives into the same repository while production goes on on timeline 1; verify
// --wal checks both from the backup (the first segment of timeline 2 starts with
// timeline 1's pages, which its header says) and names a segment lost on timeline 1
// after the fork.
func TestVerifyFollowsAPromotedCopysTimeline(t *testing.T) {
	f := forkRepository(t, false, "--target-name", "fork", "--target-action", "promote")
	r := mustPGB(t, "", nil, "verify", "--repo", f.repo, "--wal")
	if !strings.Contains(r.stdout, "verify passed") {
		t.Fatalf("verify --wal of a forked history: %s", r)
	}
	t.Logf("pgb verify --wal:\n%s", r.stdout)
	// Every record decodes and links to the one before, on both timelines: the
	// switch segment starts a new reader (docs/verify.md).
	r = mustPGB(t, "", nil, "verify", "--repo", f.repo, "--deep")
	if !strings.Contains(r.stdout, "verify passed") || strings.Contains(r.stdout, " 0 WAL records decoded") {
		t.Fatalf("verify --deep of a forked history: %s", r)
	}
	t.Logf("pgb verify --deep:\n%s", r.stdout)
	forkSeg, _ := filepath.Glob(filepath.Join(f.repo, "wal", "00000002*", "00000002????????????????"))
	if len(forkSeg) == 0 {
		t.Fatal("nothing archived on timeline 2")
	}
	sort.Strings(forkSeg)
	segs, _ := filepath.Glob(filepath.Join(f.repo, "wal", "00000001*", "00000001????????????????"))
	sort.Strings(segs)
	var after []string // timeline 1's segments after the one timeline 2 branched off in
	for _, s := range segs {
		if filepath.Base(s)[8:] > filepath.Base(forkSeg[0])[8:] {
			after = append(after, s)
		}
	}
	if len(after) < 2 {
		t.Fatalf("timeline 1 after the fork: %v", segs)
	}
	if err := os.Remove(after[0]); err != nil {
		t.Fatal(err)
	}
	r = pgb(t, "", nil, "verify", "--repo", f.repo, "--wal")
	if r.code != 1 || !strings.Contains(r.stdout, "PROBLEM  "+rel(t, f.repo, after[0])+": missing from the archive") {
		t.Fatalf("verify --wal with %s deleted: %s", filepath.Base(after[0]), r)
	}
}

// TestVerifyOnS3UnderTransientFaultsPasses: on S3 with a fifth of the requests
// failing, verify --wal and --deep retry and pass: a flaky store is not a damaged
// repository.
func TestVerifyOnS3UnderTransientFaultsPasses(t *testing.T) {
	sel, _, proxy := s3RepoBehind(t, 0.2, "")
	s := newScenarioOn(t, "", sel)
	before, reqs := proxy.faults.Load(), proxy.requests.Load()
	// Each run is some 15 requests: five make it all but certain that some fail.
	// --deep fetches the segments ahead of the record decoder, through the same retries.
	for i := range 5 {
		mode := []string{"--wal", "--deep"}[i%2]
		r := mustPGB(t, "", nil, s.cmd("verify", mode, "--concurrency", "4")...)
		if !strings.Contains(r.stdout, "verify passed: 1 backup(s)") || strings.Contains(r.stdout, "PROBLEM") {
			t.Fatalf("verify %s on S3: %s", mode, r)
		}
	}
	faults := proxy.faults.Load() - before
	t.Logf("verify: %d of %d requests faulted", faults, proxy.requests.Load()-reqs)
	if faults == 0 {
		t.Fatal("no request of verify was faulted: the test did not test faults")
	}
}

// TestVerifyDeepNamesAChangedByteInAWALRecord: a user runs pgb verify --deep on a real
// archive, which passes, decoding every record from the backup on; then a segment
// whose record has one byte changed, pushed under its own name into a copy of the
// repository (so its envelope and page headers are sound: only decoding the records
// can see it), makes verify --deep fail naming that segment and the record's LSN,
// while verify --wal still passes.
func TestVerifyDeepNamesAChangedByteInAWALRecord(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	src := archivingCluster(t, repo)
	mustPGB(t, "", src.Env(), "backup-push", "--repo", repo, "--fast")
	src.Exec(t, "CREATE TABLE big (g int, h text)")
	for i := 0; i < 3; i++ {
		src.Exec(t, "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 100000) g")
		src.WaitArchived(t, src.SwitchWAL(t), 60*time.Second)
	}

	wall := func(args ...string) (result, time.Duration) {
		began := time.Now()
		r := mustPGB(t, "", nil, args...)
		return r, time.Since(began)
	}
	_, shallow := wall("verify", "--repo", repo, "--wal", "--concurrency", "1")
	r, deep := wall("verify", "--repo", repo, "--deep", "--concurrency", "1")
	if !strings.Contains(r.stdout, "verify passed: 1 backup(s)") || !strings.Contains(r.stdout, "WAL records decoded") {
		t.Fatalf("verify --deep on a clean archive: %s", r)
	}
	var doc struct {
		OK      bool `json:"ok"`
		Checked struct {
			WALSegments int   `json:"wal_segments"`
			WALRecords  int64 `json:"wal_records"`
			WALDecoded  int64 `json:"wal_decoded"`
		} `json:"checked"`
	}
	r = mustPGB(t, "", nil, "verify", "--repo", repo, "--deep", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || !doc.OK || doc.Checked.WALRecords < 300000 ||
		doc.Checked.WALDecoded < int64(doc.Checked.WALSegments-1)*16<<20 {
		t.Fatalf("verify --deep --json (%v): %s", err, r)
	}
	mb := float64(doc.Checked.WALDecoded) / (1 << 20)
	t.Logf("pgb verify --deep --concurrency 1: %d records, %.0f MiB of WAL in %s (%.0f MiB/s); verify --wal %s",
		doc.Checked.WALRecords, mb, deep.Round(time.Millisecond), mb/deep.Seconds(), shallow.Round(time.Millisecond))

	// A segment after the backup, full of the INSERTs: change the last byte of a record
	// in its middle, and push it into a copy of the repository under its own name.
	var rows []struct {
		StopWAL string `json:"stop_wal"`
	}
	if err := json.Unmarshal([]byte(mustPGB(t, "", nil, "backup-list", "--repo", repo, "--json").stdout), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("backup-list: %v %v", err, rows)
	}
	segs, _ := filepath.Glob(filepath.Join(repo, "wal", "00000001*", "00000001????????????????"))
	sort.Strings(segs)
	var name string
	for _, s := range segs {
		if filepath.Base(s) > rows[0].StopWAL {
			name = filepath.Base(s)
			break
		}
	}
	if name == "" {
		t.Fatalf("no segment after the backup's %s: %v", rows[0].StopWAL, segs)
	}
	work := pgtest.TempDir(t)
	plain := filepath.Join(work, name)
	mustPGB(t, "", nil, "wal-fetch", "--repo", repo, name, plain)
	data, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	victim := recordInTheMiddle(t, name, data)
	off := int(uint64(victim.LSN)%uint64(len(data))) + int(victim.TotLen) - 1
	data[off] ^= 0x01
	writeFile(t, plain, data)
	damaged := filepath.Join(work, "repo")
	if err := os.CopyFS(damaged, os.DirFS(repo)); err != nil {
		t.Fatal(err)
	}
	key := rel(t, repo, filepath.Join(repo, "wal", name[:16], name))
	if err := os.Remove(filepath.Join(damaged, key)); err != nil {
		t.Fatal(err)
	}
	mustPGB(t, "", src.Env(), "wal-push", "--repo", damaged, plain)

	mustPGB(t, "", nil, "verify", "--repo", damaged, "--wal")
	r = pgb(t, "", nil, "verify", "--repo", damaged, "--deep")
	if r.code != 1 || !strings.Contains(r.stdout, "PROBLEM  "+key+": WAL record does not decode: corrupt WAL at "+victim.LSN.String()+": record CRC") ||
		!strings.Contains(r.stdout, "verify FAILED: 1 problem(s)") {
		t.Fatalf("verify --deep with a byte of the record at %s in %s changed: %s", victim.LSN, name, r)
	}
	t.Logf("pgb verify --deep, a byte of a record changed:\n%s", r.stdout)
}

// recordInTheMiddle decodes the 16 MiB segment name and returns a record from the
// middle of it that lies within one page.
func recordInTheMiddle(t *testing.T, name string, data []byte) wal.Record {
	t.Helper()
	f, err := wal.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	segSize := uint64(len(data))
	rd, err := wal.NewReader(bytes.NewReader(data), segSize, wal.LSN(f.SegmentNumber(segSize)*segSize))
	if err != nil {
		t.Fatal(err)
	}
	var in []wal.Record
	for {
		r, err := rd.Next()
		if err != nil {
			break // the last record goes on into the next segment
		}
		if uint64(r.LSN)/8192 == uint64(r.EndLSN-1)/8192 && r.TotLen > 40 {
			in = append(in, wal.Record{LSN: r.LSN, TotLen: r.TotLen, EndLSN: r.EndLSN})
		}
	}
	if len(in) < 100 {
		t.Fatalf("%s: only %d records on one page", name, len(in))
	}
	return in[len(in)/2]
}
