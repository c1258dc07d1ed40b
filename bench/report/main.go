// Command report prints the markdown report of a benchmark run (scripts/bench): the
// tables of internal/benchreport for the rows of results.csv.
//
//	go run ./bench/report [-cores N] [-cores-from WHERE] results.csv
//
// -cores is the host's cores the machine's limits assume (scripts/bench passes the
// run's nproc); without it the limits are left out.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/pgb-project/pgb/internal/benchreport"
)

func main() {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	cores := fs.Int("cores", 0, "cores of the host the run was on (0: unknown, no limits)")
	from := fs.String("cores-from", "given with -cores", "where the core count comes from, for the report")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: report [-cores N] RESULTS.csv (the harness's results: section,tool,variant,rep,wall_s,…)")
		os.Exit(2)
	}
	if err := run(fs.Arg(0), benchreport.Machine{Cores: *cores, CoresFrom: *from}); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(path string, m benchreport.Machine) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read only
	rows, err := benchreport.Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return benchreport.WriteFor(os.Stdout, benchreport.Summarise(rows), m)
}
