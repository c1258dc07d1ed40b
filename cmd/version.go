package cmd

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/walstream"
)

// versionInfo is what pgb version prints.
type versionInfo struct {
	Version      string `json:"version"`
	Commit       string `json:"commit,omitempty"`
	Go           string `json:"go"`
	Platform     string `json:"platform"`
	PGTested     []int  `json:"postgresql_tested"`
	PGMinimum    int    `json:"postgresql_minimum"`
	WALStreamMin int    `json:"wal_stream_postgresql_minimum"`
}

func versionCommand(build Build) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print pgb's version, commit, Go version and the PostgreSQL versions it is tested with (also pgb --version)",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print one JSON document"}},
		Action: func(c *cli.Context) error {
			if err := exactArgs(c, 0, "none"); err != nil {
				return err
			}
			v := versionInfo{Version: build.Version, Commit: build.Commit, Go: runtime.Version(),
				Platform: runtime.GOOS + "/" + runtime.GOARCH, PGTested: pg.TestedMajors(),
				PGMinimum: pg.MinMajor, WALStreamMin: walstream.MinMajor}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			commit := v.Commit
			if commit == "" {
				commit = "unknown"
			}
			tested := make([]string, len(v.PGTested))
			for i, m := range v.PGTested {
				tested[i] = strconv.Itoa(m)
			}
			_, err := fmt.Fprintf(c.App.Writer, "pgb %s\ncommit: %s\ngo: %s (%s)\npostgresql tested: %s (connects to %d and later; wal-stream: %d and later)\n",
				v.Version, commit, v.Go, v.Platform, strings.Join(tested, ", "), v.PGMinimum, v.WALStreamMin)
			return err
		},
	}
}
