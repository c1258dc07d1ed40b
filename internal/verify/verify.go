// Package verify re-reads a repository and proves that what it holds restores: every
// backup part decodes and holds exactly the files its manifest lists, with their sizes
// and checksums; each backup's start..stop WAL is archived; and, with WAL checking on,
// the WAL is continuous from each backup's start to the end of its timeline (across
// the timeline switches named in .history files), every WAL object decodes and every
// segment's long page header matches its name.
//
// Reading is streamed: a part flows through tar and a checksum, a WAL object through
// its header check, never held whole. Reads run in parallel (internal/workpool).
//
// What verify finds wrong in the repository is a Problem, reported as it is found;
// an error from Run means the check itself could not go on (the store is unreachable,
// the context ended).
//
// With Deep, every record of the WAL recovery from a checked backup reads is decoded
// with the WAL reader (internal/wal): each record's CRC, and its link to the record
// before it across segment boundaries, through one reader per stretch of consecutive
// archived segments (deep.go).
package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
)

// Options say what to verify.
type Options struct {
	// Backup limits the check to one backup (and, with WAL, to the WAL it needs). ""
	// checks every backup.
	Backup string
	// WAL also checks the WAL archive: continuity from each checked backup's start
	// and every WAL object.
	WAL bool
	// Deep also decodes every WAL record recovery from a checked backup reads (the
	// continuity runs of the WAL check), checking each record's CRC and xl_prev link.
	// It implies WAL.
	Deep bool
	// Concurrency is how many objects are read at once (at least one).
	Concurrency int
	// OnProblem, if set, is called for each problem as it is found, one call at a
	// time.
	OnProblem func(Problem)
	// Progress, if set, is called while a backup's parts are read, about once a
	// second (internal/progress), with the bytes of file data read of the total the
	// manifest lists, and once more when the backup is read.
	Progress func(backup string, done, total int64)
}

// Problem is one thing wrong in the repository.
type Problem struct {
	// Object is what is wrong: a key, or backup/path for a file inside a backup.
	Object string `json:"object"`
	// Backup is the backup concerned, if any.
	Backup string `json:"backup,omitempty"`
	// Problem says what is wrong.
	Problem string `json:"problem"`
}

func (p Problem) String() string { return p.Object + ": " + p.Problem }

// Report counts what was checked and the problems found.
type Report struct {
	Backups     int   `json:"backups"`      // backups checked
	Parts       int   `json:"parts"`        // backup parts read
	Files       int   `json:"files"`        // files matched against manifests
	Bytes       int64 `json:"bytes"`        // plain bytes of file data read
	WALObjects  int   `json:"wal_objects"`  // WAL objects read
	WALSegments int   `json:"wal_segments"` // segments whose presence was checked
	WALRecords  int64 `json:"wal_records"`  // WAL records decoded (Deep)
	WALDecoded  int64 `json:"wal_decoded"`  // bytes of WAL the record decoder read (Deep)
	Problems    int   `json:"-"`            // problems found (listed apart in --json)
}

// OK reports whether everything checked is sound.
func (r *Report) OK() bool { return r.Problems == 0 }

// ErrNoBackup means Options.Backup names no backup.
var ErrNoBackup = repo.ErrNoBackup

// verifier is one run.
type verifier struct {
	r   *repo.Repo
	opt Options
	all []*repo.Summary // every backup listed, also with Options.Backup

	mu   sync.Mutex // guards rep.Problems and OnProblem
	rep  Report
	nobj atomic.Int64 // WAL objects read
	nprt atomic.Int64
	nfil atomic.Int64
	nbyt atomic.Int64
	// backupRead is nbyt of the backup being read (backups are read one at a time),
	// for Options.Progress.
	backupRead atomic.Int64
	nrec       atomic.Int64 // WAL records decoded
	ndec       atomic.Int64 // bytes of WAL decoded
}

func (v *verifier) problem(object, backup, format string, a ...any) {
	p := Problem{Object: object, Backup: backup, Problem: fmt.Sprintf(format, a...)}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rep.Problems++
	if v.opt.OnProblem != nil {
		v.opt.OnProblem(p)
	}
}

// Run verifies the repository r as opt says.
func Run(ctx context.Context, r *repo.Repo, opt Options) (*Report, error) {
	opt.Concurrency = max(opt.Concurrency, 1)
	opt.WAL = opt.WAL || opt.Deep
	v := &verifier{r: r, opt: opt}
	backups, err := v.backups(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range backups {
		if err := v.backup(ctx, s); err != nil {
			return nil, err
		}
	}
	if err := v.wal(ctx, backups); err != nil {
		return nil, err
	}
	v.rep.Backups = len(backups)
	v.rep.Parts = int(v.nprt.Load())
	v.rep.Files = int(v.nfil.Load())
	v.rep.Bytes = v.nbyt.Load()
	v.rep.WALObjects = int(v.nobj.Load())
	v.rep.WALRecords = v.nrec.Load()
	v.rep.WALDecoded = v.ndec.Load()
	return &v.rep, nil
}

// backups lists the backups to check; a damaged one is a problem.
func (v *verifier) backups(ctx context.Context) ([]*repo.Summary, error) {
	all, damaged, err := v.r.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range damaged {
		if v.opt.Backup == "" || v.opt.Backup == d.Name {
			v.problem(repo.BackupPrefix(d.Name)+"manifest", d.Name, "%s", d.Err.Error())
		}
	}
	v.all = all
	// An incremental backup is restorable only with its whole chain: each backup of
	// it is verified, and a chain missing one is a problem of the backup.
	chain := func(s *repo.Summary) []*repo.Summary {
		c, err := repo.Chain(all, s.Name)
		if err != nil {
			v.problem(repo.ManifestKey(s.Name), s.Name, "%s", err.Error())
			return []*repo.Summary{s}
		}
		return c
	}
	if v.opt.Backup == "" {
		for _, s := range all {
			if s.Incremental() {
				chain(s)
			}
		}
		return all, nil
	}
	for _, s := range all {
		if s.Name == v.opt.Backup {
			return chain(s), nil
		}
	}
	for _, d := range damaged {
		if d.Name == v.opt.Backup {
			return nil, nil // reported above
		}
	}
	return nil, fmt.Errorf("%w %q (pgb backup-list shows the backups)", ErrNoBackup, v.opt.Backup)
}

// damage reports whether err says something about the repository's content (an
// object missing, corrupt or not what pgb wrote) rather than about reaching it.
func damage(err error) bool {
	return errors.Is(err, storage.ErrNotExist) || errors.Is(err, repo.ErrCorrupt) ||
		errors.Is(err, repo.ErrDamagedBackup) || errors.Is(err, repo.ErrNewerFormat) ||
		errors.Is(err, repo.ErrVanished) || errors.Is(err, errDamaged)
}

// errDamaged marks content verify found wrong (a bad tar stream, a bad header).
var errDamaged = errors.New("damaged")
