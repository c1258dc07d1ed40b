package repo

import (
	"errors"
	"fmt"
)

// MaxChain bounds the backups of one chain (a full backup and the incremental ones
// built on it): a restore opens one stream per backup of the chain for some files.
const MaxChain = 64

// ErrBrokenChain means an incremental backup's chain lacks a backup: it cannot be
// restored.
var ErrBrokenChain = errors.New("its chain of backups is broken")

// Incremental says whether s is an incremental backup (it has a parent).
func (s *Summary) Incremental() bool { return s.Parent != "" }

// Chain returns the backups a restore of backup name needs, from its full backup to
// itself, out of backups (as ListBackups returns them). A parent that is missing (or
// damaged, and so not listed), one of another cluster, one that stopped after its
// child started, or a chain longer than MaxChain is ErrBrokenChain.
func Chain(backups []*Summary, name string) ([]*Summary, error) {
	byName := make(map[string]*Summary, len(backups))
	for _, b := range backups {
		byName[b.Name] = b
	}
	s := byName[name]
	if s == nil {
		return nil, fmt.Errorf("%w %q (pgb backup-list shows the backups)", ErrNoBackup, name)
	}
	chain := []*Summary{s}
	for s.Parent != "" {
		p := byName[s.Parent]
		switch {
		case p == nil:
			return nil, fmt.Errorf("backup %s: %w: its parent %s is not in the repository (deleted, or damaged: pgb backup-list says which)", name, ErrBrokenChain, s.Parent)
		case len(chain) >= MaxChain:
			return nil, fmt.Errorf("backup %s: %w: it is more than %d backups long", name, ErrBrokenChain, MaxChain)
		case p.SystemID != s.SystemID || p.StopLSN > s.StartLSN || p.Timeline != s.Timeline || p.DataChecksums != s.DataChecksums:
			return nil, fmt.Errorf("backup %s: %w: its parent %s is of another cluster, timeline or data checksum setting, or stopped after it started", name, ErrBrokenChain, p.Name)
		case p.Format < ManifestFormat:
			return nil, fmt.Errorf("backup %s: %w: its parent %s has manifest format %d, whose parts are not in the order of its list", name, ErrBrokenChain, p.Name, p.Format)
		}
		chain = append(chain, p)
		s = p
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}
