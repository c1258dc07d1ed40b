package pgserver

import (
	"reflect"
	"testing"
)

func TestCandidates(t *testing.T) {
	if got := Candidates(15, "/opt/pg/bin", "/usr/bin"); !reflect.DeepEqual(got, []string{"/opt/pg/bin"}) {
		t.Errorf("with --pg-bin: %q", got)
	}
	want := []string{"/a", "/b", "/usr/lib/postgresql/15/bin", "/usr/pgsql-15/bin"}
	if got := Candidates(15, "", "/a:/b"); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]int{
		"postgres (PostgreSQL) 15.8 (Debian 15.8-1)\n": 15,
		"postgres (PostgreSQL) 17beta1":                17,
		"something else":                               0,
	} {
		if got := ParseVersion(in); got != want {
			t.Errorf("ParseVersion(%q) = %d, want %d", in, got, want)
		}
	}
}
