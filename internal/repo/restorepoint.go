package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/wal"
)

const restorePointsPrefix = "restore-points/"

// RestorePoint is a named point made with pgb restore-point.
type RestorePoint struct {
	Name     string    `json:"name"`
	LSN      wal.LSN   `json:"lsn"`
	Timeline uint32    `json:"timeline"`
	Time     time.Time `json:"time"`
}

// ErrRestorePointExists means the name is taken.
var ErrRestorePointExists = errors.New("restore point already exists")

// ErrNoRestorePoint means no restore point has that name.
var ErrNoRestorePoint = errors.New("no such restore point")

// ValidRestorePointName checks a name: PostgreSQL allows up to 63 bytes; pgb also keeps
// it usable as a key and in a shell.
func ValidRestorePointName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("restore point name %q: want 1 to 63 characters", name)
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("_-.:", r) {
			return fmt.Errorf("restore point name %q: use letters, digits and _ - . : only", name)
		}
	}
	if name == "list" || strings.HasPrefix(name, ".") {
		return fmt.Errorf("restore point name %q is reserved", name)
	}
	return nil
}

func restorePointKey(name string) string { return restorePointsPrefix + name + ".json" }

// PutRestorePoint records a restore point; a name taken by another point is
// ErrRestorePointExists. Exactly this point already stored (a retried write whose
// first attempt was stored but lost its acknowledgement) counts as written.
func (r *Repo) PutRestorePoint(ctx context.Context, rp RestorePoint) error {
	err := r.putOrSame(ctx, restorePointKey(rp.Name), rp, "restore point")
	if errors.Is(err, storage.ErrExist) {
		return fmt.Errorf("%w: %q", ErrRestorePointExists, rp.Name)
	}
	return err
}

// ReadRestorePoint reads one restore point.
func (r *Repo) ReadRestorePoint(ctx context.Context, name string) (RestorePoint, error) {
	var rp RestorePoint
	if err := r.getJSON(ctx, restorePointKey(name), &rp, smallDocLimit, "a restore point is a few hundred bytes"); err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return rp, fmt.Errorf("%w %q (pgb restore-point list shows them)", ErrNoRestorePoint, name)
		}
		return rp, err
	}
	if rp.Name != name {
		return rp, fmt.Errorf("restore point %q is %w: its record describes %q", name, ErrDamagedRestorePoint, rp.Name)
	}
	return rp, nil
}

// ErrDamagedRestorePoint marks a restore point whose record cannot be used.
var ErrDamagedRestorePoint = errors.New("damaged")

// ListRestorePoints returns every restore point, oldest first. One whose record is
// damaged is left out with a warning (one bad record must not hide the others); a
// storage error fails the listing.
func (r *Repo) ListRestorePoints(ctx context.Context) ([]RestorePoint, error) {
	var names []string
	err := r.st.List(ctx, restorePointsPrefix, func(o storage.ObjectInfo) error {
		if n, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, restorePointsPrefix), ".json"); ok {
			names = append(names, n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list restore points: %w", err)
	}
	out := make([]RestorePoint, 0, len(names))
	for _, n := range names {
		rp, err := r.ReadRestorePoint(ctx, n)
		switch {
		case errors.Is(err, ErrNoRestorePoint):
			continue // deleted since the listing
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrDamagedRestorePoint):
			r.log.Warn("skipping a damaged restore point", "name", n, "error", err)
			continue
		case err != nil:
			return nil, err
		}
		out = append(out, rp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LSN < out[j].LSN })
	return out, nil
}
