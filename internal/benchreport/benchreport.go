// Package benchreport turns the rows of the benchmark harness (../shared/bench's
// results.csv, plus scripts/bench-random's rows in the same format) into the markdown
// tables of bench/results/<date>.md: per work item each tool's medians and its ratio to
// pgBackRest and WAL-G, then the machine's limits and pgb's share of them.
package benchreport

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Row is one timed run: a line of results.csv.
type Row struct {
	Section, Tool, Variant string
	Rep                    int
	Wall, CPU              float64 // seconds
	MaxRSSKiB              float64
	Bytes, OutBytes        float64
	OK                     bool
	HostCPU                float64 // busy CPU seconds of the whole host during the run
}

var header = []string{"section", "tool", "variant", "rep", "wall_s", "cpu_s", "maxrss_kb", "bytes", "out_bytes", "ok", "host_cpu_s"}

// Parse reads results.csv. A file whose header is not the harness's is refused, so
// that a change of format cannot pass unnoticed.
func Parse(r io.Reader) ([]Row, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(header)
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	if len(recs) == 0 || !slices.Equal(recs[0], header) {
		return nil, errors.New("results: the first line is not the harness's header " + strings.Join(header, ","))
	}
	rows := make([]Row, 0, len(recs)-1)
	for i, rec := range recs[1:] {
		var nums [8]float64
		for j, k := range []int{3, 4, 5, 6, 7, 8, 9, 10} {
			if rec[k] == "" {
				continue
			}
			v, err := strconv.ParseFloat(rec[k], 64)
			if err != nil {
				return nil, fmt.Errorf("results line %d: %s %q is not a number", i+2, header[k], rec[k])
			}
			nums[j] = v
		}
		rows = append(rows, Row{Section: rec[0], Tool: rec[1], Variant: rec[2], Rep: int(nums[0]),
			Wall: nums[1], CPU: nums[2], MaxRSSKiB: nums[3], Bytes: nums[4], OutBytes: nums[5], OK: nums[6] == 1, HostCPU: nums[7]})
	}
	return rows, nil
}

// Result is the medians of the good runs of one tool and variant in one section.
type Result struct {
	Section, Tool, Variant string
	OK, N                  int
	Wall, CPU, RSSMiB      float64
	Bytes, OutBytes        float64
	HostCPU                float64
}

const mib = 1 << 20

// MiBps is input bytes per wall second.
func (r Result) MiBps() float64 { return div(r.Bytes/mib, r.Wall) }

// CPUPerGiB is CPU seconds per GiB of input: robust when the host is shared.
func (r Result) CPUPerGiB() float64 { return div(r.CPU, r.Bytes/(1<<30)) }

func div(a, b float64) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return a / b
}

// Summarise groups rows by section, tool and variant, in the order they first appear.
func Summarise(rows []Row) []Result {
	var out []Result
	idx := map[[3]string]int{}
	good := map[int][]Row{}
	for _, r := range rows {
		k := [3]string{r.Section, r.Tool, r.Variant}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, Result{Section: r.Section, Tool: r.Tool, Variant: r.Variant})
		}
		out[i].N++
		if r.OK {
			out[i].OK++
			good[i] = append(good[i], r)
		}
	}
	for i := range out {
		g := good[i]
		if len(g) == 0 {
			continue
		}
		m := func(f func(Row) float64) float64 {
			v := make([]float64, len(g))
			for j, r := range g {
				v[j] = f(r)
			}
			return median(v)
		}
		out[i].Wall = m(func(r Row) float64 { return r.Wall })
		out[i].CPU = m(func(r Row) float64 { return r.CPU })
		out[i].RSSMiB = m(func(r Row) float64 { return r.MaxRSSKiB / 1024 })
		out[i].Bytes = m(func(r Row) float64 { return r.Bytes })
		out[i].OutBytes = m(func(r Row) float64 { return r.OutBytes })
		out[i].HostCPU = m(func(r Row) float64 { return r.HostCPU })
	}
	return out
}

func median(v []float64) float64 {
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// works names the sections the harness, scripts/bench-random, scripts/bench-s3 (s3-…:
// the repository on a local S3 server) and scripts/bench-stream write, in the report's
// order.
var works = []struct{ section, title string }{
	{"wal-push", "wal-push, one call per segment"},
	{"wal-fetch", "wal-fetch, one call per segment"},
	{"backup", "backup-push, pgbench data"},
	{"restore", "restore of that backup"},
	{"backup-random", "backup-push, incompressible data (random bytes)"},
	{"restore-random", "restore of that backup"},
	{"s3-wal-push", "wal-push to S3 (versitygw on loopback, HTTPS), one call per segment"},
	{"s3-wal-fetch", "wal-fetch from S3, one call per segment"},
	{"s3-backup", "backup-push to S3, pgbench data"},
	{"s3-restore", "restore of that backup from S3"},
	{"wal-ship", "shipping the WAL backlog of a pgbench -i burst until the repository holds it all: archive_command (one call per segment) or wal-stream"},
}

// Machine is what the report knows of the host the run was on.
type Machine struct {
	Cores     int    // cores the machine's limits assume; 0: unknown, the limits are left out
	CoresFrom string // where that count comes from (e.g. "nproc of the run")
}

// Write prints the report without the machine's limits (the host's cores unknown).
func Write(w io.Writer, res []Result) error { return WriteFor(w, res, Machine{}) }

// WriteFor prints the report: one table per work item, then the machine's limits on
// m's cores.
func WriteFor(w io.Writer, res []Result, m Machine) error {
	var b strings.Builder
	b.WriteString("Medians of the good repetitions. MiB/s: input bytes (WAL, or the data directory without pg_wal) over wall time. " +
		"CPU s: the processes /usr/bin/time waited for (user + system): for WAL, only the per-segment calls, not the detached " +
		"workers (pgb's look-ahead archiver and prefetcher, pgBackRest's async archiving). Host CPU s: the busy CPU of the whole " +
		"host during the run, which counts them (and any other work on the host). \"vs pgBackRest\", \"vs WAL-G\": that tool's " +
		"fastest variant's wall time over this row's (above 1: this row is faster), then the same for CPU seconds — for the WAL " +
		"rows on host CPU, the only figure that counts the detached workers. Peak RSS is the largest process /usr/bin/time waited " +
		"for: it does not include detached workers.\n\n")
	s3Noted := false
	for _, wk := range works {
		var rs []Result
		for _, r := range res {
			if r.Section == wk.section {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		if strings.HasPrefix(wk.section, "s3-") && !s3Noted {
			b.WriteString(s3Note)
			s3Noted = true
		}
		writeWork(&b, wk.section, wk.title, rs)
	}
	writeLimits(&b, res, m)
	_, err := io.WriteString(w, b.String())
	return err
}

// s3Note heads the sections of the runs against a local S3 server (scripts/bench-s3).
const s3Note = "The s3-… sections: the same tools with their repository in a bucket of a local S3 server (versitygw, POSIX " +
	"backend, HTTPS with keep-alive on loopback, each tool verifying its certificate), so that requests, not start-up, take the " +
	"time. MiB/s and the ratios are per the same input bytes as above; out MiB of a push or a backup is what the bucket's " +
	"directory grew by. Host CPU s there also counts the S3 server's own work, on the same cores.\n\n"

// best is the fastest good result of tool among rs (nil: none).
func best(rs []Result, tool string) *Result {
	var out *Result
	for i := range rs {
		r := &rs[i]
		if r.Tool == tool && r.OK > 0 && (out == nil || r.Wall < out.Wall) {
			out = r
		}
	}
	return out
}

// detached reports whether a section's work is partly done by processes the timed
// command does not wait for (the WAL sections, on a filesystem or S3: look-ahead
// archiver, prefetcher, async archiving), so that only the host's CPU counts it.
func detached(section string) bool {
	return strings.HasPrefix(strings.TrimPrefix(section, "s3-"), "wal-")
}

func writeWork(b *strings.Builder, section, title string, rs []Result) {
	pgbr, walg := best(rs, "pgbackrest"), best(rs, "wal-g")
	onHost := detached(section)
	cpuCol := "CPU s"
	if onHost {
		cpuCol = "calls' CPU s"
	}
	fmt.Fprintf(b, "### %s (`%s`)\n\n", title, section)
	fmt.Fprintf(b, "| tool | variant | ok/n | wall s | MiB/s | %s | CPU s/GiB | host CPU s | peak RSS MiB | out MiB | vs pgBackRest | vs WAL-G |\n", cpuCol)
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		if r.OK == 0 {
			fmt.Fprintf(b, "| %s | %s | 0/%d | FAILED | | | | | | | | |\n", r.Tool, r.Variant, r.N)
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %d/%d | %.2f | %s | %.2f | %s | %s | %.0f | %s | %s | %s |\n",
			r.Tool, r.Variant, r.OK, r.N, r.Wall, num(r.MiBps(), 0), r.CPU, num(r.CPUPerGiB(), 2), num(r.HostCPU, 2), r.RSSMiB,
			num(r.OutBytes/mib, 0), ratio(pgbr, r, onHost), ratio(walg, r, onHost))
	}
	b.WriteString("\n")
}

// ratio is how many times faster r is than the anchor (anchor wall / r's wall), with
// the CPU seconds ratio after it: of the host's busy CPU when onHost (the work of
// detached processes counted), else of the timed processes.
func ratio(anchor *Result, r Result, onHost bool) string {
	if anchor == nil {
		return ""
	}
	if onHost {
		return fmt.Sprintf("%s× (host CPU %s×)", num(div(anchor.Wall, r.Wall), 2), num(div(anchor.HostCPU, r.HostCPU), 2))
	}
	return fmt.Sprintf("%s× (CPU %s×)", num(div(anchor.Wall, r.Wall), 2), num(div(anchor.CPU, r.CPU), 2))
}

func num(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return ""
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func find(res []Result, section, tool, variant string) *Result {
	for i := range res {
		r := &res[i]
		if r.Section == section && r.Tool == tool && r.Variant == variant && r.OK > 0 {
			return r
		}
	}
	return nil
}

// limit is one machine limit: a throughput and the CPU it costs per GiB.
type limit struct {
	name, how string
	mibps     float64 // wall-clock throughput of the limit
	cpuPerGiB float64 // CPU seconds per GiB of its codec on one core
}

func writeLimits(b *strings.Builder, res []Result, m Machine) {
	if m.Cores <= 0 {
		return
	}
	type target struct {
		work, data, sample string
	}
	var lines []string
	for _, t := range []target{{"backup", "pgbench", "data"}, {"restore", "pgbench", "data"},
		{"backup-random", "random", "random"}, {"restore-random", "random", "random"}} {
		l, ok := machineLimit(res, t.work, t.sample, m.Cores)
		if !ok {
			continue
		}
		for _, r := range res {
			if r.Section != t.work || r.Tool != "pgb" || r.OK == 0 {
				continue
			}
			// With every core busy, the share of the codec's speed pgb's CPU cost allows.
			cpuShare := num(100*l.cpuPerGiB/r.CPUPerGiB(), 0) + "%"
			lines = append(lines, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s |", t.work, l.how, num(l.mibps, 0),
				num(l.cpuPerGiB, 2), r.Variant, num(r.MiBps(), 0), num(100*r.MiBps()/l.mibps, 0)+"%", cpuShare))
		}
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("### The machine's limit and pgb's share of it\n\n")
	fmt.Fprintf(b, "Limits from bench_ref.sh in the same run, on %d cores (%s): backup = %d cores of `lz4 -1` compress; restore = the "+
		"lesser of a 1 GiB `dd conv=fsync` write and %d cores of `lz4 -d`. \"CPU share\" is the limit's CPU per GiB over pgb's: the "+
		"share pgb would reach with every core busy, which a loaded host does not change much.\n\n", m.Cores, m.CoresFrom, m.Cores, m.Cores)
	b.WriteString("| work | limit | limit MiB/s | limit CPU s/GiB per core | pgb variant | pgb MiB/s | pgb % of limit | CPU share |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
}

// machineLimit computes a work item's limit from the ref rows of its sample.
func machineLimit(res []Result, work, sample string, cores int) (limit, bool) {
	c := float64(cores)
	comp := find(res, "ref-compress", "lz4", sample+"-lz4-1")
	decomp := find(res, "ref-decompress", "lz4", sample+"-lz4-1")
	write := find(res, "ref", "write-dd", "fsync-1GiB")
	switch {
	case strings.HasPrefix(work, "backup") && comp != nil:
		return limit{name: work, how: fmt.Sprintf("%d × lz4 -1 (%s)", cores, sample),
			mibps: c * comp.MiBps(), cpuPerGiB: comp.CPUPerGiB()}, true
	case strings.HasPrefix(work, "restore") && decomp != nil:
		l := limit{name: work, how: fmt.Sprintf("%d × lz4 -d (%s)", cores, sample), mibps: c * decomp.MiBps(), cpuPerGiB: decomp.CPUPerGiB()}
		if write != nil && write.MiBps() < l.mibps {
			l = limit{name: work, how: "dd conv=fsync write", mibps: write.MiBps(), cpuPerGiB: decomp.CPUPerGiB()}
		}
		return l, true
	}
	return limit{}, false
}
