package waldumptest

import (
	"os"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Unzstd is the content of the zstd-compressed file at path (internal/wal/testdata/pg15
// holds segments and pg_waldump's output so), failing t when it cannot be read.
func Unzstd(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(b, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}
