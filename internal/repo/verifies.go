package repo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
)

// Verify records: one small sealed document per pgb verify that ran to its end,
// under verifies/<finished, UTC>-<random>-<ok|failed>.json, named like drill records
// (the outcome in the key: the newest verify and the newest that passed cost one
// listing and a read each).
const verifiesPrefix = "verifies/"

// VerifyFormat is the version of the verify record pgb writes.
const VerifyFormat = 1

// Bounds of a verify record: what it may decode to, the problems it lists (their
// number is counted apart) and each problem's length.
const (
	verifyLimit        = 64 << 10
	VerifyProblemsKept = 10
	verifyProblemMax   = 1024
)

// VerifyRecord is what pgb verify leaves in the repository (docs/repository-format.md).
type VerifyRecord struct {
	Format   int       `json:"format"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// OK: everything checked is sound. Failed: Problems were found, or Error says why
	// verify could not finish.
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	Problems int    `json:"problems"`
	// FirstProblems are the first VerifyProblemsKept problems, as pgb verify printed them.
	FirstProblems []string `json:"first_problems,omitempty"`
	// Scope is what was checked: "backups", "backups and WAL", "backups, WAL and every
	// WAL record", each optionally "of backup NAME".
	Scope      string `json:"scope"`
	Backups    int    `json:"backups"`
	Bytes      int64  `json:"bytes"`
	WALObjects int    `json:"wal_objects"`
	Host       string `json:"host,omitempty"`
	Version    string `json:"pgb_version,omitempty"`

	// Key is where the record is stored (set when read or written; not stored).
	Key string `json:"-"`
}

// ErrDamagedVerify marks a verify record that cannot be used.
var ErrDamagedVerify = errors.New("damaged verify record")

// Validate checks a record read from the repository (untrusted) or about to be
// written.
func (v *VerifyRecord) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrDamagedVerify, fmt.Sprintf(format, a...))
	}
	switch {
	case v.Format < 1:
		return bad("format %d", v.Format)
	case v.Format > VerifyFormat:
		return fmt.Errorf("%w: verify record format %d, this pgb understands up to %d: upgrade pgb", ErrNewerFormat, v.Format, VerifyFormat)
	case v.Started.IsZero() || v.Finished.IsZero():
		return bad("no start or finish time")
	case v.Finished.Before(v.Started):
		return bad("finished before it started")
	case v.OK && (v.Problems != 0 || v.Error != ""):
		return bad("ok with problems or an error")
	case !v.OK && v.Problems == 0 && v.Error == "":
		return bad("failed without a problem or an error")
	case v.Problems < 0 || v.Backups < 0 || v.Bytes < 0 || v.WALObjects < 0 || v.Bytes > math.MaxInt64/2:
		return bad("a negative count")
	case len(v.FirstProblems) > VerifyProblemsKept || len(v.FirstProblems) > v.Problems:
		return bad("%d problems listed of %d", len(v.FirstProblems), v.Problems)
	case len(v.Error) > drillErrorMax || len(v.Scope) > 1024 || len(v.Host) > 1024 || len(v.Version) > 256:
		return bad("a field is too long")
	}
	for _, p := range v.FirstProblems {
		if len(p) > verifyProblemMax {
			return bad("a problem of %d bytes", len(p))
		}
	}
	return nil
}

// PutVerify stores a verify's record, only if absent (a new random name each call),
// and returns its key. Problems and an error longer than pgb keeps are cut.
func (r *Repo) PutVerify(ctx context.Context, v VerifyRecord) (string, error) {
	v.Format = VerifyFormat
	v.Started, v.Finished = v.Started.UTC(), v.Finished.UTC()
	if len(v.Error) > drillErrorMax {
		v.Error = cutUTF8(v.Error, drillErrorMax-len("…")) + "…"
	}
	if len(v.FirstProblems) > VerifyProblemsKept {
		v.FirstProblems = v.FirstProblems[:VerifyProblemsKept]
	}
	for i, p := range v.FirstProblems {
		if len(p) > verifyProblemMax {
			v.FirstProblems[i] = cutUTF8(p, verifyProblemMax-len("…")) + "…"
		}
	}
	if err := v.Validate(); err != nil {
		return "", fmt.Errorf("record the verify: %w", err)
	}
	return r.putRecord(ctx, verifiesPrefix, "verify", v.Finished, v.OK, v)
}

// ReadVerify reads the record under key and checks it against its key.
func (r *Repo) ReadVerify(ctx context.Context, key string) (*VerifyRecord, error) {
	var v VerifyRecord
	if err := r.readRecord(ctx, verifiesPrefix, key, &v, recordCheck{what: "verify", limit: verifyLimit, why: "a verify record is a few kilobytes",
		damaged: ErrDamagedVerify, validate: v.Validate, finished: func() time.Time { return v.Finished }, ok: func() bool { return v.OK }}); err != nil {
		return nil, err
	}
	v.Key = key
	return &v, nil
}

// ListVerifyKeys lists the verify records, oldest first, without reading them.
func (r *Repo) ListVerifyKeys(ctx context.Context) ([]DrillKey, error) {
	return r.listRecordKeys(ctx, verifiesPrefix, "verify")
}

// DeleteVerifies removes the verify records named.
func (r *Repo) DeleteVerifies(ctx context.Context, keys []DrillKey) error {
	return r.deleteRecords(ctx, verifiesPrefix, "verify", keys)
}

// Verifies is what the repository says about past verifies.
type Verifies struct {
	Last        *VerifyRecord // the newest, whatever its outcome; nil: none
	LastSuccess *VerifyRecord // the newest that passed; nil: none
	Damaged     []error       // records passed over, with why
	Future      int           // records dated after now + DrillClockSlack, passed over
}

// RecentVerifies reads the newest verify record and the newest that passed, as of
// now: one listing and a read each, passing over records dated in the future (a wrong
// clock) and damaged ones (at most drillDamagedMax read).
func (r *Repo) RecentVerifies(ctx context.Context, now time.Time) (*Verifies, error) {
	keys, err := r.ListVerifyKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := &Verifies{}
	for len(keys) > 0 && keys[len(keys)-1].Finished.After(now.Add(DrillClockSlack)) {
		keys = keys[:len(keys)-1]
		out.Future++
	}
	for i := len(keys) - 1; i >= 0 && len(out.Damaged) < drillDamagedMax; i-- {
		k := keys[i]
		if out.Last != nil && (out.LastSuccess != nil || !k.OK) {
			if out.LastSuccess != nil {
				break
			}
			continue // only the newest is read whatever its outcome; then the newest ok
		}
		v, err := r.ReadVerify(ctx, k.Key)
		switch {
		case errors.Is(err, storage.ErrNotExist):
			continue
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrDamagedVerify), errors.Is(err, ErrNewerFormat):
			r.log.Warn("skipping a damaged verify record", "key", k.Key, "error", err)
			out.Damaged = append(out.Damaged, err)
			continue
		case err != nil:
			return nil, err
		}
		if out.Last == nil {
			out.Last = v
		}
		if v.OK && out.LastSuccess == nil {
			out.LastSuccess = v
		}
	}
	return out, nil
}
