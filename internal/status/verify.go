package status

import (
	"context"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
)

// Verifies is what status says about the pgb verify runs the repository records.
type Verifies struct {
	// Last is the newest verify, LastSuccess the newest that passed (the same one when
	// the newest passed); absent when there is none.
	Last        *Verify `json:"last,omitempty"`
	LastSuccess *Verify `json:"last_success,omitempty"`
	// Damaged and Future count the records passed over: damaged, or dated in the
	// future (a wrong clock).
	Damaged int `json:"damaged_records,omitempty"`
	Future  int `json:"future_records,omitempty"`
}

// Verify is one verify's record, as status shows it.
type Verify struct {
	Finished      time.Time `json:"finished"`
	AgeSeconds    float64   `json:"age_seconds"`
	OK            bool      `json:"ok"`
	Problems      int       `json:"problems"`
	FirstProblems []string  `json:"first_problems,omitempty"`
	Error         string    `json:"error,omitempty"`
	Scope         string    `json:"scope"`
	Record        string    `json:"record"`
}

func verifyOf(v *repo.VerifyRecord, now time.Time) *Verify {
	if v == nil {
		return nil
	}
	return &Verify{Finished: v.Finished.UTC(), AgeSeconds: now.Sub(v.Finished).Round(time.Second).Seconds(), OK: v.OK,
		Problems: v.Problems, FirstProblems: v.FirstProblems, Error: v.Error, Scope: v.Scope, Record: v.Key}
}

func gatherVerifies(ctx context.Context, rp *repo.Repo, now time.Time) (*Verifies, error) {
	v, err := rp.RecentVerifies(ctx, now)
	if err != nil {
		return nil, err
	}
	return &Verifies{Last: verifyOf(v.Last, now), LastSuccess: verifyOf(v.LastSuccess, now), Damaged: len(v.Damaged), Future: v.Future}, nil
}

// writeVerifies prints the last verify, and the last that passed when the last failed.
func (r *Report) writeVerifies(p func(string, ...any), short func(time.Time) string) {
	v := r.Verifies
	if v == nil {
		return
	}
	if n := v.Damaged + v.Future; n > 0 {
		defer p("  (%d verify record(s) passed over: %d damaged, %d dated in the future: a host's wrong clock)", n, v.Damaged, v.Future)
	}
	l := v.Last
	switch {
	case l == nil:
		p("Last verify: none recorded (pgb verify --wal reads every object)")
		return
	case l.OK:
		p("Last verify: passed %s (%s ago), %s", short(l.Finished), ageText(l.AgeSeconds), printable(l.Scope))
		return
	case l.Error != "":
		p("Last verify FAILED: %s (%s ago), could not finish:", short(l.Finished), ageText(l.AgeSeconds))
		p("  %s", cutRunes(printable(l.Error), 76))
	default:
		p("Last verify FAILED: %s (%s ago), %d problem(s) in %s", short(l.Finished), ageText(l.AgeSeconds), l.Problems, printable(l.Scope))
		for i, pr := range l.FirstProblems {
			if i == 3 {
				p("  … (pgb verify lists them all)")
				break
			}
			p("  %s", cutRunes(printable(pr), 76))
		}
	}
	if s := v.LastSuccess; s != nil {
		p("  last passed %s (%s ago)", short(s.Finished), ageText(s.AgeSeconds))
	}
}

// cutRunes is s cut to n characters, with an ellipsis when cut.
func cutRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
