package restore

import (
	"context"
	"os"
	"path/filepath"
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
