// Command report prints the markdown report of a benchmark run (scripts/bench): the
// tables of internal/benchreport for the rows of results.csv.
//
//	go run ./bench/report results.csv
package main

import (
	"fmt"
	"os"

	"github.com/pgb-project/pgb/internal/benchreport"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: report RESULTS.csv (the harness's results: section,tool,variant,rep,wall_s,…)")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read only
	rows, err := benchreport.Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return benchreport.Write(os.Stdout, benchreport.Summarise(rows))
}
