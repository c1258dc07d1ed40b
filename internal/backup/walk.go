package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// controlFile is pg_control, which a backup copies last (tree.control).
const controlFile = "global/pg_control"

// What PostgreSQL's own base backup leaves out (src/backend/backup/basebackup.c).
var (
	// Directories whose contents are skipped; the directory itself is kept.
	excludeDirContents = map[string]bool{
		"pg_wal": true, "pg_dynshmem": true, "pg_notify": true, "pg_replslot": true,
		"pg_serial": true, "pg_snapshots": true, "pg_stat_tmp": true, "pg_subtrans": true,
	}
	// Files skipped in the top directory.
	excludeTopFiles = map[string]bool{
		"postmaster.pid": true, "postmaster.opts": true, "postgresql.auto.conf.tmp": true,
		"current_logfiles.tmp": true, "backup_label": true, "backup_label.old": true,
		"tablespace_map": true, "tablespace_map.old": true, "backup_manifest": true,
		"recovery.signal": true, "standby.signal": true,
		".pgb-restored": true, // pgb restore's record of what it left (restore.RecordFile): this directory's own
	}
	// Temporary relations: t<backend>_<relfilenode>[_fork][.segment].
	tempRelation = regexp.MustCompile(`^t[0-9]+_[0-9]+(_[a-z]+)?(\.[0-9]+)?$`)
	// Relation files: <relfilenode>[_fork][.segment].
	relationFile = regexp.MustCompile(`^([0-9]+)(_[a-z]+)?(\.[0-9]+)?$`)
)

// entry is one thing to back up. path is relative to the data directory and
// "/"-separated; abs is where to read it, empty for the files of a walk: they are the
// data directory joined with path (see where), and a cluster may have hundreds of
// thousands of them.
type entry struct {
	path   string
	abs    string
	mode   fs.FileMode
	size   int64
	target string // symlinks
}

// where is where to read e: abs, or root (the data directory) joined with path.
// Tablespace files are reached through their link under pg_tblspc, as the walk
// reached them.
func (e entry) where(root string) string {
	if e.abs != "" {
		return e.abs
	}
	return filepath.Join(root, filepath.FromSlash(e.path))
}

// tree is the result of a walk.
type tree struct {
	root  string // the data directory
	dirs  []entry
	files []entry     // files of smallFile bytes or more, biggest first
	small *smallFiles // the others (see smallFiles); close releases them
	// control is global/pg_control, copied alone after every other file: in a backup
	// taken on a standby its minRecoveryPoint is where the restore becomes
	// consistent, so it must not be older than any page copied (as pg_basebackup
	// sends it last).
	control     *entry
	links       []entry
	tablespaces []tablespace
	bytes       int64
	// skipped are links under pg_tblspc that are no tablespace of the cluster: they
	// are not followed and not backed up.
	skipped []string

	known map[uint32]string // the cluster's tablespaces: OID -> location
	open  openFunc
}

// tablespace is a link found under pg_tblspc.
type tablespace struct {
	oid      uint32
	location string
}

// walk lists what belongs in a base backup of dataDir. Links under pg_tblspc are
// followed only when they are tablespaces of the running cluster (known: OID ->
// location, as pg_tablespace says) and their contents listed under pg_tblspc/<oid>/;
// any other link there is skipped (tree.skipped). pg_wal is kept as an empty directory
// even when it is a link. Directories are read through open.
//
// The caller closes the tree.
func walk(dataDir string, known map[uint32]string, open openFunc) (*tree, error) {
	small, err := newSmallFiles()
	if err != nil {
		return nil, err
	}
	t := &tree{root: dataDir, known: known, open: open, small: small}
	if t.open == nil {
		t.open = os.Open
	}
	if err := t.walkDir(dataDir, "", true); err != nil {
		t.close()
		return nil, err
	}
	if err := t.small.finish(); err != nil {
		t.close()
		return nil, err
	}
	sort.Slice(t.files, func(i, j int) bool { return t.files[i].size > t.files[j].size })
	return t, nil
}

// close releases the list of small files.
func (t *tree) close() { t.small.close() }

// readDir lists a directory, sorted by name, opened through t.open.
func (t *tree) readDir(abs string) ([]os.DirEntry, error) {
	d, err := t.open(abs)
	if err != nil {
		return nil, err
	}
	defer func() { _ = d.Close() }() // directory opened read-only
	ents, err := d.ReadDir(-1)
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	return ents, err
}

func (t *tree) walkDir(abs, rel string, top bool) error {
	ents, err := t.readDir(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !top {
			return nil // dropped while we walked: WAL replay recreates or removes it
		}
		return fmt.Errorf("read directory %s: %w", abs, err)
	}
	skipMain := unloggedRelations(ents, rel)
	for _, de := range ents {
		name := de.Name()
		p := path.Join(rel, name)
		a := filepath.Join(abs, name)
		if skip(name, rel, top) || skipMain[name] {
			continue
		}
		info, err := os.Lstat(a)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("stat %s: %w", a, err)
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(a)
			if err != nil {
				return fmt.Errorf("read link %s: %w", a, err)
			}
			switch {
			case rel == "pg_tblspc":
				// A tablespace: its contents are backed up under the link's path and
				// restored through tablespace_map. Only the cluster's own: a link
				// planted here must not make the backup read anything else.
				oid, err := strconv.ParseUint(name, 10, 32)
				loc, known := t.known[uint32(oid)]
				if err != nil || !known || loc != target || strconv.FormatUint(oid, 10) != name {
					t.skipped = append(t.skipped, p+" -> "+target)
					continue
				}
				ti, err := os.Stat(a)
				if err != nil {
					return fmt.Errorf("tablespace %s -> %s: %w", p, target, err)
				}
				t.tablespaces = append(t.tablespaces, tablespace{oid: uint32(oid), location: target})
				t.dirs = append(t.dirs, entry{path: p, abs: a, mode: ti.Mode().Perm()})
				if err := t.walkDir(a, p, false); err != nil {
					return err
				}
			case top && name == "pg_wal":
				t.dirs = append(t.dirs, entry{path: p, abs: a, mode: 0o700})
				t.dirs = append(t.dirs, entry{path: "pg_wal/archive_status", mode: 0o700})
			default:
				t.links = append(t.links, entry{path: p, abs: a, target: target})
			}
		case info.IsDir():
			t.dirs = append(t.dirs, entry{path: p, abs: a, mode: info.Mode().Perm()})
			if top && excludeDirContents[name] {
				if name == "pg_wal" {
					t.dirs = append(t.dirs, entry{path: "pg_wal/archive_status", mode: 0o700})
				}
				continue
			}
			if err := t.walkDir(a, p, false); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			e := entry{path: p, mode: info.Mode().Perm(), size: info.Size()}
			switch {
			case p == controlFile:
				t.control = &e
			case e.size < smallFile:
				if err := t.small.add(e); err != nil {
					return err
				}
			default:
				t.files = append(t.files, e)
			}
			t.bytes += info.Size()
		}
		// sockets, devices and pipes are not part of a cluster's state
	}
	return nil
}

// skip applies PostgreSQL's exclusion rules to one name in directory rel.
func skip(name, rel string, top bool) bool {
	if top && excludeTopFiles[name] {
		return true
	}
	if strings.HasPrefix(name, "pgsql_tmp") || strings.HasPrefix(name, "pg_internal.init") {
		return true
	}
	if strings.HasPrefix(name, ".pgb-tmp-") {
		return true
	}
	if inDatabaseDir(rel) && tempRelation.MatchString(name) {
		return true
	}
	return false
}

// inDatabaseDir reports whether rel holds relation files: base/<oid> or a
// tablespace's PG_<version>_<catversion>/<oid>.
func inDatabaseDir(rel string) bool {
	parts := strings.Split(rel, "/")
	switch {
	case len(parts) == 2 && parts[0] == "base":
		return true
	case len(parts) == 4 && parts[0] == "pg_tblspc":
		return true
	}
	return false
}

// unloggedRelations finds the files of unlogged relations in a database directory:
// every fork but the init fork is skipped, as PostgreSQL resets them from it.
func unloggedRelations(ents []os.DirEntry, rel string) map[string]bool {
	if !inDatabaseDir(rel) {
		return nil
	}
	unlogged := map[string]bool{}
	for _, de := range ents {
		if m := relationFile.FindStringSubmatch(de.Name()); m != nil && m[2] == "_init" && m[3] == "" {
			unlogged[m[1]] = true
		}
	}
	if len(unlogged) == 0 {
		return nil
	}
	skipped := map[string]bool{}
	for _, de := range ents {
		if m := relationFile.FindStringSubmatch(de.Name()); m != nil && unlogged[m[1]] && m[2] != "_init" {
			skipped[de.Name()] = true
		}
	}
	return skipped
}
