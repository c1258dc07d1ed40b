package status

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage/mem"
)

// A failed drill's error is untrusted text (a record may be hostile): status prints
// it in lines of at most 80 columns of valid UTF-8, a long word (a path, an S3 key)
// broken, and no control character or terminal escape.
func TestStatusPrintsAFailedDrillsErrorSafely(t *testing.T) {
	now := time.Date(2026, 12, 10, 12, 0, 0, 0, time.UTC)
	for _, msg := range []string{
		strings.Repeat("ééééééééé ", 40),
		"restore of backup: open /var/lib/" + strings.Repeat("x", 300) + ": no space left on device",
		"drill failed: \x1b[2J\x1b]0;owned\x07 check\r\nfake line\x00 \u202e \x9b31m",
	} {
		rp := repo.New(mem.New(), repo.Options{})
		d := repo.DrillRecord{Started: now.Add(-time.Hour), Finished: now.Add(-time.Hour), Error: msg}
		if _, err := rp.PutDrill(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		r, err := Gather(context.Background(), rp, Options{Now: now, Drills: true})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := r.Write(&b); err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(b.String(), "\n") {
			if !utf8.ValidString(l) || utf8.RuneCountInString(l) > 80 || strings.ContainsFunc(l, isUnsafe) {
				t.Errorf("valid UTF-8 %v, %d columns: %q", utf8.ValidString(l), utf8.RuneCountInString(l), l)
			}
		}
	}
}

func isUnsafe(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\u202e' }
