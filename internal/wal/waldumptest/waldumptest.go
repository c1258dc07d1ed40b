// Package waldumptest cross-checks the WAL reader against pg_waldump: it parses
// pg_waldump's text output (run with TZ=UTC) and compares it, record by record,
// with what wal.Reader decoded from the same segments. The integration test on
// a live cluster and the unit test on the committed segments both use it.
package waldumptest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/wal"
)

// Entry is one record line of pg_waldump's output.
type Entry struct {
	Rmgr       string
	Len, Tot   uint32
	Xid        uint32
	LSN, Prev  wal.LSN
	Desc       string
	lineNumber int
}

var lineRE = regexp.MustCompile(`^rmgr: (\S+)\s+len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), prev ([0-9A-F]+/[0-9A-F]+), desc: (.*)$`)

// Parse reads pg_waldump's record lines; other lines are an error.
func Parse(out string) ([]Entry, error) {
	var es []Entry
	for i, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("pg_waldump line %d not understood: %q", i+1, line)
		}
		e := Entry{Rmgr: m[1], Desc: m[7], lineNumber: i + 1}
		l, _ := strconv.ParseUint(m[2], 10, 32)
		t, _ := strconv.ParseUint(m[3], 10, 32)
		x, _ := strconv.ParseUint(m[4], 10, 32)
		e.Len, e.Tot, e.Xid = uint32(l), uint32(t), uint32(x)
		var err error
		if e.LSN, err = wal.ParseLSN(m[5]); err != nil {
			return nil, err
		}
		if e.Prev, err = wal.ParseLSN(m[6]); err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	return es, nil
}

// Summary counts what Compare checked, so a test can insist that the workload
// produced every kind of record.
type Summary struct {
	Records, Commits, Aborts, CommitsPrepared, AbortsPrepared int
	RestorePoints, Checkpoints, DroppedRels, Subxacts         int
	EndsOfRecovery                                            int
	RestorePointNames                                         []string
	LastCommit                                                time.Time
}

var xactRE = regexp.MustCompile(`^(COMMIT|ABORT|COMMIT_PREPARED|ABORT_PREPARED) (?:(\d+): )?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC`)

// Compare checks that recs are exactly the records pg_waldump listed: the same
// LSNs in the same order, lengths, xl_xid and xl_prev; and for each commit
// and abort the same kind, transaction id and timestamp (to the microsecond),
// for each restore point the same name, for each checkpoint the same redo
// LSN and timeline, and the same number of dropped relations and
// subtransactions. It returns the first disagreement.
func Compare(es []Entry, recs []wal.Record) (Summary, error) {
	var s Summary
	if len(es) != len(recs) {
		n := min(len(es), len(recs))
		return s, fmt.Errorf("pg_waldump lists %d records, the reader %d (first %d agree on LSN: %v)", len(es), len(recs), n, firstLSNDiff(es, recs, n))
	}
	for i, e := range es {
		r := recs[i]
		if e.LSN != r.LSN || e.Prev != r.Prev || e.Tot != r.TotLen || e.Xid != r.Xid {
			return s, fmt.Errorf("record %d: pg_waldump has lsn %s prev %s tot %d tx %d, the reader lsn %s prev %s tot %d tx %d",
				i, e.LSN, e.Prev, e.Tot, e.Xid, r.LSN, r.Prev, r.TotLen, r.Xid)
		}
		if err := compareOne(e, r, &s); err != nil {
			return s, fmt.Errorf("record at %s (pg_waldump line %d, %q): %w", e.LSN, e.lineNumber, e.Desc, err)
		}
		s.Records++
	}
	return s, nil
}

func firstLSNDiff(es []Entry, recs []wal.Record, n int) string {
	for i := range n {
		if es[i].LSN != recs[i].LSN {
			return fmt.Sprintf("first difference at index %d: %s vs %s", i, es[i].LSN, recs[i].LSN)
		}
	}
	return "no difference in the common prefix"
}

func compareOne(e Entry, r wal.Record, s *Summary) error {
	switch e.Rmgr {
	case "Transaction":
		return compareXact(e, r, s)
	case "XLOG":
		switch {
		case strings.HasPrefix(e.Desc, "RESTORE_POINT "):
			if r.RestorePoint == nil {
				return fmt.Errorf("the reader decoded no restore point")
			}
			if want := strings.TrimPrefix(e.Desc, "RESTORE_POINT "); r.RestorePoint.Name != want {
				return fmt.Errorf("restore point %q, pg_waldump says %q", r.RestorePoint.Name, want)
			}
			s.RestorePoints++
			s.RestorePointNames = append(s.RestorePointNames, r.RestorePoint.Name)
		case strings.HasPrefix(e.Desc, "CHECKPOINT_"):
			if r.Checkpoint == nil {
				return fmt.Errorf("the reader decoded no checkpoint")
			}
			want := fmt.Sprintf("redo %s; tli %d; prev tli %d;", r.Checkpoint.Redo, r.Checkpoint.Timeline, r.Checkpoint.PrevTimeline)
			if !strings.Contains(e.Desc, want) || strings.HasPrefix(e.Desc, "CHECKPOINT_SHUTDOWN") != r.Checkpoint.Shutdown {
				return fmt.Errorf("the reader has %q (shutdown %v)", want, r.Checkpoint.Shutdown)
			}
			s.Checkpoints++
		case strings.HasPrefix(e.Desc, "END_OF_RECOVERY "):
			eor := r.EndOfRecovery
			if eor == nil {
				return fmt.Errorf("the reader decoded no end of recovery")
			}
			want := fmt.Sprintf("END_OF_RECOVERY tli %d; prev tli %d; time %s UTC", eor.Timeline, eor.PrevTimeline, eor.Time.Format("2006-01-02 15:04:05.000000"))
			if e.Desc != want {
				return fmt.Errorf("the reader has %q", want)
			}
			s.EndsOfRecovery++
		}
	default:
		if r.RmgrID == wal.RmgrXLOG || r.RmgrID == wal.RmgrXact {
			return fmt.Errorf("resource manager %d, pg_waldump says %s", r.RmgrID, e.Rmgr)
		}
	}
	return nil
}

func compareXact(e Entry, r wal.Record, s *Summary) error {
	if r.RmgrID != wal.RmgrXact {
		return fmt.Errorf("resource manager %d, pg_waldump says Transaction", r.RmgrID)
	}
	m := xactRE.FindStringSubmatch(e.Desc)
	if m == nil {
		if r.Xact != nil {
			return fmt.Errorf("the reader decoded a %s, pg_waldump does not", r.Xact.Kind)
		}
		return nil
	}
	x := r.Xact
	if x == nil || x.Kind.String() != m[1] {
		return fmt.Errorf("the reader decoded %+v", x)
	}
	if m[2] != "" && m[2] != strconv.FormatUint(uint64(x.Xid), 10) {
		return fmt.Errorf("prepared transaction %d, pg_waldump says %s", x.Xid, m[2])
	}
	want, err := time.Parse("2006-01-02 15:04:05.999999", m[3])
	if err != nil {
		return err
	}
	if !x.Time.Equal(want) {
		return fmt.Errorf("time %s, pg_waldump says %s", x.Time.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
	if n := countList(e.Desc, "rels"); n != len(x.DroppedRels) {
		return fmt.Errorf("%d dropped relations, pg_waldump lists %d", len(x.DroppedRels), n)
	}
	if n := countList(e.Desc, "subxacts"); n != len(x.Subxacts) {
		return fmt.Errorf("%d subtransactions, pg_waldump lists %d", len(x.Subxacts), n)
	}
	switch x.Kind {
	case wal.Commit:
		s.Commits++
		s.LastCommit = x.Time
	case wal.CommitPrepared:
		s.CommitsPrepared++
		s.LastCommit = x.Time
	case wal.Abort:
		s.Aborts++
	case wal.AbortPrepared:
		s.AbortsPrepared++
	}
	s.DroppedRels += len(x.DroppedRels)
	s.Subxacts += len(x.Subxacts)
	return nil
}

// countList counts the space-separated items after "; name:" in a description.
func countList(desc, name string) int {
	_, rest, ok := strings.Cut(desc, "; "+name+":")
	if !ok {
		return 0
	}
	rest, _, _ = strings.Cut(rest, ";")
	return len(strings.Fields(rest))
}
