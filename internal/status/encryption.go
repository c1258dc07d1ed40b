package status

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
	"github.com/pgb-project/pgb/internal/window"
)

// EncryptionReport says which keys read the repository's objects: the recipient sets
// new objects were encrypted to (after a key rotation, several), which set each
// backup was written for (Backup.RecipientSet), and which set the WAL at each end of
// every window was written for. Recipients are public keys: the identities of every
// set a retained object names are needed to restore it.
type EncryptionReport struct {
	RecipientSets []repo.RecipientSet `json:"recipient_sets"`
	// WAL samples the first and the last segment of every window (one ranged read
	// each); pgb verify --wal reads every object.
	WAL []WALEncryption `json:"wal_samples"`
}

// WALEncryption is the recipient set one archived segment is encrypted to ("": not
// encrypted).
type WALEncryption struct {
	Segment      string `json:"segment"`
	RecipientSet string `json:"recipient_set"`
}

// gatherEncryption fills r.Encryption when the repository holds encrypted objects or
// recipient set records; what cannot be read is a warning.
func (r *Report) gatherEncryption(ctx context.Context, rp *repo.Repo, g *window.Repository) error {
	sets, err := rp.RecipientSets(ctx)
	if err != nil {
		return err
	}
	e := &EncryptionReport{RecipientSets: sets, WAL: []WALEncryption{}}
	if e.RecipientSets == nil {
		e.RecipientSets = []repo.RecipientSet{}
	}
	any := len(sets) > 0
	startWAL := map[string]string{}
	for _, b := range g.Backups {
		startWAL[b.Name] = b.StartWAL
	}
	for i := range r.Backups {
		if r.Backups[i].RecipientSet != "" {
			any = true
		}
	}
	if !any {
		return nil // nothing encrypted: no trailer is read
	}
	seen := map[string]bool{}
	for _, w := range r.Windows {
		for _, seg := range []string{startWAL[w.Backup], w.LastSegment} {
			if seg == "" || seen[seg] {
				continue
			}
			seen[seg] = true
			f, err := wal.Parse(seg)
			if err != nil {
				continue
			}
			set, err := rp.WALRecipientSet(ctx, f)
			switch {
			case errors.Is(err, storage.ErrNotExist):
				continue
			case err != nil:
				r.Warnings = append(r.Warnings, fmt.Sprintf("which keys read %s is not shown: %v", seg, err))
				continue
			}
			e.WAL = append(e.WAL, WALEncryption{Segment: seg, RecipientSet: set})
		}
	}
	r.Encryption = e
	return nil
}
