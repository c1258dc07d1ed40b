package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/atomicfile"
)

// IncompleteMarker is the file restore writes into the data directory and into each
// tablespace directory before anything else, and removes as its very last step, after
// global/pg_control is in place. A directory holding it was left incomplete by an
// interrupted restore: --force may clear it, and only such a directory.
const IncompleteMarker = ".pgb-restore-incomplete"

// ErrNotIncomplete means --force was asked to clear a directory that pgb did not leave
// incomplete.
var ErrNotIncomplete = errors.New("not a directory left incomplete by pgb restore")

// hasMarker reports whether dir holds the marker as a regular file (a link does not
// count).
func hasMarker(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, IncompleteMarker))
	return err == nil && fi.Mode().IsRegular()
}

// ErrRestoreFinished means --force was asked to clear a directory that still holds
// IncompleteMarker although the restore there finished (global/pg_control is in
// place) or PostgreSQL has run on it: a restore killed between its last two steps.
// PostgreSQL may have taken writes there since, so pgb never deletes it.
var ErrRestoreFinished = errors.New("the restore there finished")

// finishedSign names the file in data directory dir that shows that a restore there
// finished or that PostgreSQL ran on it ("" if none): global/pg_control is put in
// place only after every file is written, and postmaster.pid is the server's.
func finishedSign(dir string) string {
	for _, p := range []string{"global/pg_control", "postmaster.pid"} {
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(p))); err == nil {
			return p
		}
	}
	return ""
}

// finishedError explains why a marked directory is not cleared: what holds the marker
// (dir) and the data directory whose sign shows the restore finished.
func finishedError(dir, dataDir, sign string) error {
	return fmt.Errorf("%w: %s holds %s, but data directory %s holds %s, so that restore finished (the marker is a leftover of its last step) and PostgreSQL may have run on it since; "+
		"pgb will not delete it: remove %s yourself to use the restore as it is, or remove the directory yourself to restore again: %w",
		ErrNotIncomplete, dir, IncompleteMarker, dataDir, sign, filepath.Join(dir, IncompleteMarker), ErrRestoreFinished)
}

// CheckTarget makes sure dir can be restored into: absent or empty, or — with force —
// left incomplete by an interrupted restore (it holds IncompleteMarker and neither
// global/pg_control nor postmaster.pid).
func CheckTarget(dir string, force bool) error {
	err := CheckEmpty(dir, "data directory")
	if err == nil || !errors.Is(err, ErrNotEmpty) {
		return err
	}
	if hasMarker(dir) {
		if sign := finishedSign(dir); sign != "" {
			return finishedError(dir, dir, sign)
		}
	}
	switch {
	case force && hasMarker(dir):
		return nil
	case force:
		return fmt.Errorf("--force clears only a directory that an interrupted pgb restore left incomplete (it holds %s); %s has none, so it was left untouched: %w",
			IncompleteMarker, dir, ErrNotIncomplete)
	case hasMarker(dir):
		return fmt.Errorf("%w: an interrupted restore left it incomplete; run the same command with --force to clear it and restore again", err)
	}
	return err
}

// writeMarker puts the marker into dir, durably, listing the tablespace directories
// of this restore.
func (r *Restorer) writeMarker(dir, backup string, spc map[uint32]string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "pgb restore of backup %s into %s, started %s: incomplete while this file exists\n",
		backup, r.Opt.DataDir, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "data directory %s\n", r.Opt.DataDir)
	for _, loc := range values(spc) {
		fmt.Fprintf(&b, "tablespace %s\n", loc)
	}
	f, err := atomicfile.Create(filepath.Join(dir, IncompleteMarker), 0o600)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write([]byte(b.String())); err != nil {
		return err
	}
	return f.Commit()
}

// removeMarker removes the marker from dir, durably.
func removeMarker(dir string) error {
	if err := os.Remove(filepath.Join(dir, IncompleteMarker)); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// markedTablespaces are the tablespace directories a data directory's marker lists.
func markedTablespaces(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, IncompleteMarker))
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if loc, ok := strings.CutPrefix(line, "tablespace "); ok && filepath.IsAbs(loc) {
			out = append(out, filepath.Clean(loc))
		}
	}
	return out
}

// markedDataDir is the data directory of the restore that wrote dir's marker ("" if
// the marker does not say).
func markedDataDir(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, IncompleteMarker))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	for _, line := range lines {
		if d, ok := strings.CutPrefix(line, "data directory "); ok && filepath.IsAbs(d) {
			return filepath.Clean(d)
		}
	}
	// Markers of an older pgb name it only in their first line.
	if _, rest, ok := strings.Cut(lines[0], " into "); ok {
		if d, _, ok := strings.Cut(rest, ", started "); ok && filepath.IsAbs(d) {
			return filepath.Clean(d)
		}
	}
	return ""
}

// clearIncomplete empties dir if — and only if — it holds the marker: everything in
// it but the marker goes (links are removed, never followed), then the marker.
func clearIncomplete(dir string) (bool, error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil || !fi.IsDir() || !hasMarker(dir) {
		return false, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if e.Name() == IncompleteMarker {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return false, fmt.Errorf("clear incomplete restore in %s: %w", dir, err)
		}
	}
	if err := removeMarker(dir); err != nil {
		return false, fmt.Errorf("clear incomplete restore in %s: %w", dir, err)
	}
	return true, nil
}

// clearForce clears what an interrupted restore left: the data directory, the
// tablespace directories its marker lists and those of this restore — each only if it
// holds its own marker. A directory without one is left alone (and later refused
// if it is not empty).
func (r *Restorer) clearForce(spc map[uint32]string) error {
	dirs := append(markedTablespaces(r.Opt.DataDir), values(spc)...)
	if err := CheckTarget(r.Opt.DataDir, true); err != nil {
		return err
	}
	// A tablespace directory of a restore that finished (its data directory holds
	// pg_control) is in use: refuse before clearing anything.
	for _, d := range dirs {
		if !hasMarker(d) {
			continue
		}
		if dd := markedDataDir(d); dd != "" {
			if sign := finishedSign(dd); sign != "" {
				return finishedError(d, dd, sign)
			}
		}
	}
	cleared, err := clearIncomplete(r.Opt.DataDir)
	if err != nil {
		return err
	}
	if cleared {
		r.Log.Warn("cleared the incomplete restore left by an interrupted one (--force)", "dir", r.Opt.DataDir)
	}
	for _, d := range dirs {
		cleared, err := clearIncomplete(d)
		if err != nil {
			return err
		}
		if cleared {
			r.Log.Warn("cleared the incomplete restore left by an interrupted one (--force)", "dir", d)
		}
	}
	return nil
}
