package integration

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// pgb --version names the PostgreSQL versions it is tested with: the server this suite
// runs against must be one of them.
func TestVersionNamesThePostgreSQLItIsTestedWith(t *testing.T) {
	bin := pgtest.Require(t)
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\(PostgreSQL\) (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("postgres --version: %q", out)
	}
	major, _ := strconv.Atoi(string(m[1]))
	pgb := pgtest.BuildPGB(t)
	js, err := exec.Command(pgb, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Tested []int `json:"postgresql_tested"`
	}
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatal(err)
	}
	for _, tested := range v.Tested {
		if tested == major {
			return
		}
	}
	t.Errorf("the suite runs PostgreSQL %d, but pgb version names %v as tested (internal/pg.TestedMajors)", major, v.Tested)
}
