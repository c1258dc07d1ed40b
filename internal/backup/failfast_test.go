package backup

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/faulty"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

func readChars(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip("no /proc/self/io")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Skip("no rchar")
	return 0
}

// When a part's upload fails at once (repository full, refused, or the backup
// cancelled), the worker stops at its next write, and does not read, checksum and
// compress (on 4 cores of the database host) the rest of the 64 MiB file — nor go on
// to part-size, 1 GiB by default — before the failure shows at the part's Close.
// Counted in bytes read by this process, not in time.
func TestBackupStopsReadingSoonAfterAPartUploadFails(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "base/5"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "base/5/16396"), randomBytes(9, 64<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	st := faulty.New(mem.New(), faulty.Rule{Op: faulty.Put, Key: "backups/"})
	codec, err := compress.New("lz4", 0)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pusher{Repo: repo.New(st, repo.Options{Codec: codec, PartCompressors: 4}), Opt: Options{PartSize: 1 << 30, Concurrency: 1}}
	tr, err := walk(dir, nil, os.Open)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	before := readChars(t)
	err = p.copyFiles(context.Background(), tr, &repo.Manifest{Summary: repo.Summary{Name: "b"}, List: testList(t)}, os.Open, nil, nil)
	read := readChars(t) - before
	if err == nil {
		t.Fatal("copyFiles succeeded with every part upload failing")
	}
	if read > 16<<20 {
		t.Errorf("read %d MiB of the data directory after the part's upload had failed (%v)", read>>20, err)
	}
}
