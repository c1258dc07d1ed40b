package restore

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/crc32c"
)

// A delta restore keeps a file only when its size and CRC-32C are the backup's, the
// checksum combined from pieces read on every worker: files of no piece, one, and
// several (a partial last one), and a byte changed in any piece, or a size, is caught.
func TestSameFilesCombinesThePiecesChecksums(t *testing.T) {
	const chunk = 1000
	dir := t.TempDir()
	r := &Restorer{Opt: Options{Concurrency: 3}}
	var check []found
	var want []bool
	add := func(name string, content []byte, backup []byte, same bool) {
		abs := filepath.Join(dir, name)
		if err := os.WriteFile(abs, content, 0o600); err != nil {
			t.Fatal(err)
		}
		check = append(check, found{abs: abs, p: &filePlan{size: int64(len(backup)), crc: crc32c.Hex(crc32c.Checksum(backup))}})
		want = append(want, same)
	}
	data := make([]byte, 3*chunk+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, n := range []int{0, 1, chunk, chunk + 1, 2 * chunk, len(data)} {
		add("same"+string(rune('a'+len(check))), data[:n], data[:n], true)
	}
	for _, at := range []int{0, chunk - 1, chunk, 2*chunk + 5, len(data) - 1} {
		changed := append([]byte(nil), data...)
		changed[at]++
		add("changed"+string(rune('a'+len(check))), changed, data, false)
	}
	add("shorter", data[:len(data)-1], data, false)
	add("longer", data, data[:len(data)-1], false)
	// One kept file already has the backup's modification time: nothing to set on it.
	mtime := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	if err := os.Chtimes(check[3].abs, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	check[3].p.mtime = mtime
	got, err := r.sameFiles(context.Background(), check, chunk)
	if err != nil {
		t.Fatal(err)
	}
	for i := range check {
		if got[i] != want[i] {
			t.Errorf("%s: kept %v, want %v", filepath.Base(check[i].abs), got[i], want[i])
		}
		if check[i].settled != (i == 3) {
			t.Errorf("%s: settled %v: only the one with the backup's time is", filepath.Base(check[i].abs), check[i].settled)
		}
	}
}

// With TrustTime, a file whose size and modification time are the backup's, and that
// has no other link, is kept unread when that time is more than timeSlack before the
// backup started, or when the restore record has it, with the backup's checksum, as it
// still is; any other file is read and checksummed, and kept only when its content is
// the backup's.
func TestTrustTimeKeepsUnreadOnlyWhatTheRuleAllows(t *testing.T) {
	dir := t.TempDir()
	r := &Restorer{Opt: Options{Concurrency: 2, TrustTime: true}, trust: true}
	backup := []byte("the backup's content")
	other := []byte("the backup's CONTENT") // as long as backup
	crc := crc32c.Hex(crc32c.Checksum(backup))
	old := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	recorded := func(t *testing.T, abs string) *recordEntry { // the file as it is now
		t.Helper()
		fi, err := os.Lstat(abs)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return &recordEntry{CRC: crc, Size: fi.Size(), MTimeNano: fi.ModTime().UnixNano(), CTimeNano: ctime(st).UnixNano(), Dev: st.Dev, Ino: st.Ino}
	}
	cases := []struct {
		name         string
		content      []byte
		mtime        time.Time // of the file; the backup recorded old
		notAfter     time.Time
		rec          func(t *testing.T, abs string) *recordEntry // then
		kept, byTime bool
	}{
		// Another content, read for none of these: the rule is all that judged them.
		{"time long before the backup started", other, old, old.Add(time.Minute), nil, true, true},
		{"as the record has it", other, old, old, recorded, true, true},
		// Read and checksummed.
		{"time too close to the backup's start, no record", other, old, old, nil, false, false},
		{"another time", other, old.Add(time.Second), old.Add(time.Minute), recorded, false, false},
		{"another time, the backup's content", backup, old.Add(time.Second), old.Add(time.Minute), nil, true, false},
		{"changed since the record (chmod)", other, old, old, func(t *testing.T, abs string) *recordEntry {
			e := recorded(t, abs)
			if err := os.Chmod(abs, 0o640); err != nil {
				t.Fatal(err)
			}
			return e
		}, false, false},
		{"recorded with another checksum", other, old, old, func(t *testing.T, abs string) *recordEntry {
			e := recorded(t, abs)
			e.CRC = crc32c.Hex(crc32c.Checksum(other))
			return e
		}, false, false},
		{"recorded as another inode", other, old, old, func(t *testing.T, abs string) *recordEntry {
			e := recorded(t, abs)
			e.Ino++
			return e
		}, false, false},
		{"a second link to it", other, old, old.Add(time.Minute), func(t *testing.T, abs string) *recordEntry {
			if err := os.Link(abs, abs+".link"); err != nil {
				t.Fatal(err)
			}
			return nil
		}, false, false},
		{"time too close, the backup's content", backup, old, old, nil, true, false},
	}
	var check []found
	for i, c := range cases {
		abs := filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(abs, c.content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(abs, c.mtime, c.mtime); err != nil {
			t.Fatal(err)
		}
		var rec *recordEntry
		if c.rec != nil {
			rec = c.rec(t, abs)
		}
		p := &filePlan{size: int64(len(backup)), mtime: old, crc: crc}
		check = append(check, found{abs: abs, p: p, notAfter: c.notAfter, rec: rec})
	}
	// A file of another size is not kept, whatever its time.
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, backup[1:], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(short, old, old); err != nil {
		t.Fatal(err)
	}
	check = append(check, found{abs: short, p: &filePlan{size: int64(len(backup)), mtime: old}, notAfter: old.Add(time.Minute)})
	got, err := r.sameFiles(context.Background(), check, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		if got[i] != c.kept || check[i].byTime != c.byTime {
			t.Errorf("%s: kept %v unread %v, want %v %v", c.name, got[i], check[i].byTime, c.kept, c.byTime)
		}
	}
	if last := len(check) - 1; got[last] || check[last].byTime {
		t.Error("a file of another size was kept")
	}
	// Without TrustTime, only the content counts.
	r.trust = false
	for i := range check {
		check[i].byTime = false
	}
	if got, err = r.sameFiles(context.Background(), check, 1<<20); err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		if want := string(c.content) == string(backup); got[i] != want || check[i].byTime {
			t.Errorf("%s, checksummed: kept %v unread %v, want %v", c.name, got[i], check[i].byTime, want)
		}
	}
}
