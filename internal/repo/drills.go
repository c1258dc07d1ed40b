package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
)

// Drill records: one small sealed document per pgb drill, under
// drills/<finished, UTC>-<random>-<ok|failed>.json. The outcome is in the key as
// well as in the document, so that finding the newest successful drill costs one
// listing and one read, whatever the number of failed drills since; a record whose
// document disagrees with its key is damaged.
const drillsPrefix = "drills/"

// DrillFormat is the version of the drill record pgb writes.
const DrillFormat = 1

// drillLimit bounds what a drill record may decode to: a few hundred bytes, the
// error message included (cut to drillErrorMax).
const drillLimit = 64 << 10

// drillErrorMax is the longest error a record keeps, in bytes.
const drillErrorMax = 4096

// drillMinSeconds and drillMaxSeconds bound a drill's restore or replay time when it
// moved bytes: a millisecond, 31 years.
const (
	drillMinSeconds = 1e-3
	drillMaxSeconds = 1e9
)

// drillTimeFormat is the time in a drill record's key: sortable, UTC, milliseconds.
const drillTimeFormat = "20060102T150405.000Z"

// DrillRecord is what a drill leaves in the repository (docs/repository-format.md).
type DrillRecord struct {
	Format   int       `json:"format"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	Target   string    `json:"target,omitempty"`
	Backup   string    `json:"backup,omitempty"` // "" : the drill chose no backup
	RTO      DrillRTO  `json:"rto"`
	RPO      DrillRPO  `json:"rpo"`
	Host     string    `json:"host,omitempty"`
	Version  string    `json:"pgb_version,omitempty"`

	// Key is where the record is stored (set when read or written; not stored).
	Key string `json:"-"`
}

// DrillRTO is the recovery time a drill measured.
type DrillRTO struct {
	RestoreSeconds float64 `json:"restore_seconds"`
	ReplaySeconds  float64 `json:"replay_seconds"`
	TotalSeconds   float64 `json:"total_seconds"`
	BytesRestored  int64   `json:"bytes_restored"`
	BytesReplayed  int64   `json:"bytes_replayed"`
}

// DrillRPO is the data loss a drill measured; nil fields were not measured.
type DrillRPO struct {
	GapSeconds          *float64 `json:"gap_seconds,omitempty"`
	NewestWALAgeSeconds *float64 `json:"newest_wal_age_seconds,omitempty"`
}

// ErrDamagedDrill marks a drill record that cannot be used.
var ErrDamagedDrill = errors.New("damaged drill record")

// Validate checks a record read from the repository (untrusted) or about to be
// written: known format, times set and in order, numbers finite and not negative,
// times of at most drillMaxSeconds and, with bytes moved, at least drillMinSeconds,
// sizes of the strings bounded.
func (d *DrillRecord) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrDamagedDrill, fmt.Sprintf(format, a...))
	}
	switch {
	case d.Format < 1:
		return bad("format %d", d.Format)
	case d.Format > DrillFormat:
		return fmt.Errorf("%w: drill record format %d, this pgb understands up to %d: upgrade pgb", ErrNewerFormat, d.Format, DrillFormat)
	case d.Started.IsZero() || d.Finished.IsZero():
		return bad("no start or finish time")
	case d.Finished.Before(d.Started):
		return bad("finished %s before it started %s", d.Finished.Format(time.RFC3339), d.Started.Format(time.RFC3339))
	case d.OK && d.Error != "":
		return bad("ok with an error")
	case !d.OK && d.Error == "":
		return bad("failed without an error")
	case d.OK && d.Backup == "":
		return bad("ok without a backup")
	case len(d.Error) > drillErrorMax:
		return bad("error of %d bytes", len(d.Error))
	case len(d.Target) > 1024 || len(d.Host) > 1024 || len(d.Version) > 256:
		return bad("a field is too long")
	case d.Backup != "" && !validBackupName(d.Backup):
		return bad("backup name %q", d.Backup)
	}
	nums := []float64{d.RTO.RestoreSeconds, d.RTO.ReplaySeconds, d.RTO.TotalSeconds, float64(d.RTO.BytesRestored), float64(d.RTO.BytesReplayed)}
	if d.RPO.NewestWALAgeSeconds != nil {
		nums = append(nums, *d.RPO.NewestWALAgeSeconds)
	}
	for _, n := range nums {
		if n < 0 || math.IsNaN(n) || math.IsInf(n, 0) {
			return bad("RTO or RPO figure %v", n)
		}
	}
	for _, n := range []float64{d.RTO.RestoreSeconds, d.RTO.ReplaySeconds, d.RTO.TotalSeconds} {
		if n > drillMaxSeconds {
			return bad("RTO of %g s", n)
		}
	}
	// Bytes in no measurable time: a throughput of infinity, which the RTO estimate
	// would divide by.
	if (d.RTO.BytesRestored > 0 && d.RTO.RestoreSeconds < drillMinSeconds) || (d.RTO.BytesReplayed > 0 && d.RTO.ReplaySeconds < drillMinSeconds) {
		return bad("bytes restored or replayed in less than a millisecond")
	}
	if g := d.RPO.GapSeconds; g != nil && (math.IsNaN(*g) || math.IsInf(*g, 0)) {
		return bad("RPO gap %v", *g)
	}
	return nil
}

func drillOutcome(ok bool) string {
	if ok {
		return "ok"
	}
	return "failed"
}

// drillKey is where a record finished at t with outcome ok and random suffix rnd lives.
func drillKey(t time.Time, rnd string, ok bool) string { return recordKey(drillsPrefix, t, rnd, ok) }

// recordKey is where a record under prefix finished at t with outcome ok and random
// suffix rnd lives.
func recordKey(prefix string, t time.Time, rnd string, ok bool) string {
	return prefix + t.UTC().Format(drillTimeFormat) + "-" + rnd + "-" + drillOutcome(ok) + ".json"
}

// parseDrillKey reads a key drillKey wrote; false for anything else.
func parseDrillKey(key string) (t time.Time, ok bool, valid bool) {
	return parseRecordKey(drillsPrefix, key)
}

// parseRecordKey reads a record's key under prefix (drills/, verifies/):
// <finished>-<16 hex digits>-<ok|failed>.json; false for anything else.
func parseRecordKey(prefix, key string) (t time.Time, ok bool, valid bool) {
	name, found := strings.CutPrefix(key, prefix)
	if !found {
		return t, false, false
	}
	name, found = strings.CutSuffix(name, ".json")
	if !found {
		return t, false, false
	}
	parts := strings.Split(name, "-")
	if len(parts) != 3 || len(parts[1]) != 16 {
		return t, false, false
	}
	if _, err := hex.DecodeString(parts[1]); err != nil {
		return t, false, false
	}
	t, err := time.Parse(drillTimeFormat, parts[0])
	if err != nil {
		return t, false, false
	}
	switch parts[2] {
	case "ok":
		return t, true, true
	case "failed":
		return t, false, true
	}
	return t, false, false
}

// PutDrill stores a drill's record, only if absent (a new random name each call:
// never overwriting), and returns its key. The record is validated first; an error
// longer than pgb keeps is cut.
func (r *Repo) PutDrill(ctx context.Context, d DrillRecord) (string, error) {
	d.Format = DrillFormat
	d.Started, d.Finished = d.Started.UTC(), d.Finished.UTC()
	if len(d.Error) > drillErrorMax {
		d.Error = cutUTF8(d.Error, drillErrorMax-len("…")) + "…"
	}
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("record the drill: %w", err)
	}
	return r.putRecord(ctx, drillsPrefix, "drill", d.Finished, d.OK, d)
}

// putRecord stores doc, a record that finished at finished with outcome ok, under
// prefix<finished>-<random>-<ok|failed>.json, only if absent (a new random name each
// call: never overwriting), and returns its key.
func (r *Repo) putRecord(ctx context.Context, prefix, what string, finished time.Time, ok bool, doc any) (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	key := recordKey(prefix, finished, hex.EncodeToString(rnd[:]), ok)
	if err := r.putJSON(ctx, key, doc); err != nil {
		return "", fmt.Errorf("record the %s in %s: %w", what, key, err)
	}
	return key, nil
}

// cutUTF8 is s cut to at most n bytes, at a character boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// ReadDrill reads the record under key (as ListDrillKeys returns it) and checks it
// against its key: a record that does not decode, fails Validate, or whose time or
// outcome disagree with its key wraps ErrDamagedDrill (or ErrCorrupt).
func (r *Repo) ReadDrill(ctx context.Context, key string) (*DrillRecord, error) {
	var d DrillRecord
	if err := r.readRecord(ctx, drillsPrefix, key, &d, recordCheck{what: "drill", limit: drillLimit, why: "a drill record is a few hundred bytes",
		damaged: ErrDamagedDrill, validate: d.Validate, finished: func() time.Time { return d.Finished }, ok: func() bool { return d.OK }}); err != nil {
		return nil, err
	}
	d.Key = key
	return &d, nil
}

// recordCheck says how readRecord reads and checks one kind of record.
type recordCheck struct {
	what, why string
	limit     int64
	damaged   error // the kind's sentinel
	validate  func() error
	finished  func() time.Time
	ok        func() bool
}

// readRecord reads the record under key into doc and checks it against its key: a
// record that does not decode, fails validate, or whose time or outcome disagree with
// its key wraps c.damaged (or ErrCorrupt).
func (r *Repo) readRecord(ctx context.Context, prefix, key string, doc any, c recordCheck) error {
	t, ok, valid := parseRecordKey(prefix, key)
	if !valid {
		return fmt.Errorf("%s: %w: not a %s record's name", key, c.damaged, c.what)
	}
	if err := r.getJSON(ctx, key, doc, c.limit, c.why); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if c.ok() != ok || !c.finished().UTC().Truncate(time.Millisecond).Equal(t) {
		return fmt.Errorf("%s: %w: its document says finished %s, ok %v", key, c.damaged, c.finished().UTC().Format(time.RFC3339Nano), c.ok())
	}
	return nil
}

// DrillKey is a drill record's key as listed: when it finished and its outcome, as
// the key says (untrusted until ReadDrill checked the document).
type DrillKey struct {
	Key      string
	Finished time.Time
	OK       bool
}

// ListDrillKeys lists the drill records, oldest first, in one listing, without
// reading them. Keys that are not drill records' names are left out.
func (r *Repo) ListDrillKeys(ctx context.Context) ([]DrillKey, error) {
	return r.listRecordKeys(ctx, drillsPrefix, "drill")
}

// listRecordKeys lists the records under prefix, oldest first.
func (r *Repo) listRecordKeys(ctx context.Context, prefix, what string) ([]DrillKey, error) {
	var out []DrillKey
	err := r.st.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if t, ok, valid := parseRecordKey(prefix, o.Key); valid {
			out = append(out, DrillKey{Key: o.Key, Finished: t, OK: ok})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s records: %w", what, err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Finished.Equal(out[j].Finished) {
			return out[i].Finished.Before(out[j].Finished)
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}

// Drills is what the repository says about past drills.
type Drills struct {
	// Last is the newest drill, whatever its outcome; nil when there is none.
	Last *DrillRecord
	// Successes are the newest successful drills, newest first (at most the number
	// asked for).
	Successes []*DrillRecord
	// Damaged are the records passed over, with why.
	Damaged []error
	// Future counts the records dated after now + DrillClockSlack, passed over: the
	// clock of the host that ran the drill was wrong (or the record is hostile), and
	// such a record would otherwise stay "the newest drill" until that date.
	// FutureKey is the newest of them, FutureHost the host its document names ("" if
	// it does not read).
	Future     int
	FutureKey  string
	FutureHost string
	// Unread counts the records passed over without being read once
	// drillDamagedMax damaged ones were met: a repository with thousands of damaged
	// records costs a bounded number of reads.
	Unread int
}

// drillDamagedMax is how many damaged records RecentDrills reads (and names) before
// it passes over the older ones unread.
const drillDamagedMax = 20

// DrillClockSlack is how far after now a drill record may say it finished before it
// is taken for a wrong clock and passed over.
const DrillClockSlack = 5 * time.Minute

// LastSuccess is the newest successful drill, nil if none.
func (d *Drills) LastSuccess() *DrillRecord {
	if len(d.Successes) == 0 {
		return nil
	}
	return d.Successes[0]
}

// RecentDrills reads the newest drill and the newest successes successful ones: one
// listing, and one read per record returned (plus one per damaged record
// passed over, at most drillDamagedMax, the older ones counted in Unread; and one for
// the newest record dated after now + DrillClockSlack, which is passed over and
// counted in Future). A damaged record is passed over with a
// warning; a storage error fails.
func (r *Repo) RecentDrills(ctx context.Context, successes int) (*Drills, error) {
	return r.RecentDrillsAt(ctx, successes, time.Now())
}

// RecentDrillsAt is RecentDrills as of now.
func (r *Repo) RecentDrillsAt(ctx context.Context, successes int, now time.Time) (*Drills, error) {
	keys, err := r.ListDrillKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := &Drills{}
	for len(keys) > 0 && keys[len(keys)-1].Finished.After(now.Add(DrillClockSlack)) {
		k := keys[len(keys)-1]
		keys = keys[:len(keys)-1]
		if out.Future++; out.Future > 1 {
			continue
		}
		out.FutureKey = k.Key
		r.log.Warn("skipping a drill record dated in the future", "key", k.Key, "now", now.UTC().Format(time.RFC3339))
		d, err := r.ReadDrill(ctx, k.Key)
		switch {
		case err == nil:
			out.FutureHost = d.Host
		case errors.Is(err, storage.ErrNotExist), errors.Is(err, ErrCorrupt), errors.Is(err, ErrDamagedDrill), errors.Is(err, ErrNewerFormat):
		default:
			return nil, err
		}
	}
	read := func(k DrillKey) (*DrillRecord, error) {
		d, err := r.ReadDrill(ctx, k.Key)
		switch {
		case errors.Is(err, storage.ErrNotExist):
			return nil, nil // deleted since the listing
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrDamagedDrill), errors.Is(err, ErrNewerFormat):
			r.log.Warn("skipping a damaged drill record", "key", k.Key, "error", err)
			out.Damaged = append(out.Damaged, err)
			return nil, nil
		}
		return d, err
	}
	lastDone := false
	for i := len(keys) - 1; i >= 0; i-- {
		k := keys[i]
		if lastDone && len(out.Successes) >= successes {
			break
		}
		if lastDone && !k.OK {
			continue // its key says failed: only the newest drill is read whatever it says
		}
		if len(out.Damaged) >= drillDamagedMax {
			out.Unread++
			continue
		}
		d, err := read(k)
		if err != nil {
			return nil, err
		}
		if d == nil {
			continue
		}
		if !lastDone {
			out.Last, lastDone = d, true
		}
		if d.OK && len(out.Successes) < successes {
			out.Successes = append(out.Successes, d)
		}
	}
	if out.Unread > 0 {
		r.log.Warn("drill records passed over unread after too many damaged ones", "damaged", len(out.Damaged), "unread", out.Unread)
	}
	return out, nil
}

// DeleteDrills removes the drill records named (keys ListDrillKeys returned), in
// batches where the store has them. Records already gone count as removed.
func (r *Repo) DeleteDrills(ctx context.Context, keys []DrillKey) error {
	return r.deleteRecords(ctx, drillsPrefix, "drill", keys)
}

// deleteRecords removes the records under prefix named by keys.
func (r *Repo) deleteRecords(ctx context.Context, prefix, what string, keys []DrillKey) error {
	ks := make([]string, 0, len(keys))
	for _, k := range keys {
		if _, _, valid := parseRecordKey(prefix, k.Key); !valid {
			return fmt.Errorf("%q is not a %s record", k.Key, what)
		}
		ks = append(ks, k.Key)
	}
	if err := storage.DeleteAll(ctx, r.st, ks); err != nil {
		return fmt.Errorf("remove %s records: %w", what, err)
	}
	return nil
}
