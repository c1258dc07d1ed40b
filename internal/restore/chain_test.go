package restore

import (
	"errors"
	"testing"

	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/repo"
)

func layerOf(name, parent string, files ...repo.File) *repo.Manifest {
	return &repo.Manifest{Summary: repo.Summary{Name: name, Parent: parent}, Files: files}
}

func whole(p string, size int64) repo.File { return repo.File{Path: p, Size: size, Part: 1} }
func same(p string, size int64) repo.File  { return repo.File{Path: p, Size: size} }
func pages(t *testing.T, p string, size int64, blocks ...uint32) repo.File {
	t.Helper()
	enc, err := pagemap.Of(blocks...).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	l := pagemap.Layer{Size: size, Map: pagemap.Of(blocks...)}
	return repo.File{Path: p, Size: size, Part: 1, MapLen: int64(len(enc)), Stored: int64(len(enc)) + l.Stored()}
}

// chainPlan finds, for each file of the newest backup, the backup holding it whole and
// those patching it, and refuses a chain whose entries do not follow each other.
func TestChainPlan(t *testing.T) {
	const b = pagemap.BlockSize
	full := layerOf("f", "", whole("a", 4*b), whole("b", 2*b), whole("gone", b))
	i1 := layerOf("i1", "f", same("a", 4*b), pages(t, "b", 3*b, 0, 2), whole("c", b))
	i2 := layerOf("i2", "i1", pages(t, "a", 3*b, 1), same("b", 3*b), same("c", b))
	plan, err := chainPlan([]*repo.Manifest{full, i1, i2})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		from   int
		deltas uint64
		last   int
	}{"a": {0, 1 << 2, 2}, "b": {0, 1 << 1, 1}, "c": {1, 0, 1}}
	if len(plan) != len(want) {
		t.Fatalf("plan of %d files, want %d", len(plan), len(want))
	}
	for p, w := range want {
		if got := plan[p]; got == nil || got.from != w.from || got.deltas != w.deltas || got.last != w.last {
			t.Errorf("%s: %+v, want %+v", p, got, w)
		}
	}
	// A file's pages are checked, when read, against its size in the backup before.
	if plan["a"].prev[2] != 4*b || plan["b"].prev[1] != 2*b {
		t.Errorf("sizes before the pages: a %v, b %v", plan["a"].prev, plan["b"].prev)
	}
	for _, tc := range []struct {
		name  string
		chain []*repo.Manifest
	}{
		{"unchanged with another size", []*repo.Manifest{full, layerOf("i1", "f", same("a", 3*b), whole("b", b), whole("gone", b))}},
		{"held whole nowhere", []*repo.Manifest{full, layerOf("i1", "f", same("new", b), whole("b", b), whole("gone", b))}},
		{"the full backup lists it unchanged", []*repo.Manifest{layerOf("f", "", same("a", b)), layerOf("i1", "f", same("a", b))}},
		{"listed twice", []*repo.Manifest{full, layerOf("i1", "f", whole("a", b), whole("a", b))}},
	} {
		if _, err := chainPlan(tc.chain); !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: chainPlan = %v, want ErrDamaged", tc.name, err)
		}
	}
}
