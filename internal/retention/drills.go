package retention

import (
	"context"
	"time"

	"github.com/pgb-project/pgb/internal/repo"
)

// KeepDrills is how many drill records pgb delete keeps: the newest KeepDrills, plus
// the newest successful one when it is older (pgb status shows it, and the RTO
// estimate reads the newest successful ones).
const KeepDrills = 30

// OldDrills are the drill records beyond the newest keep, except the newest one
// whose name says it passed. keys are oldest first, as repo.ListDrillKeys returns
// them.
func OldDrills(keys []repo.DrillKey, keep int) []repo.DrillKey {
	if len(keys) <= keep {
		return nil
	}
	lastOK := -1
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].OK {
			lastOK = i
			break
		}
	}
	var out []repo.DrillKey
	for i := 0; i < len(keys)-keep; i++ {
		if i != lastOK {
			out = append(out, keys[i])
		}
	}
	return out
}

// oldDrills lists the drill records a delete removes, as of now.
func oldDrills(ctx context.Context, r *repo.Repo, now time.Time) ([]repo.DrillKey, error) {
	keys, err := r.ListDrillKeys(ctx)
	if err != nil {
		return nil, err
	}
	return OldDrills(notFuture(keys, now), KeepDrills), nil
}

// oldVerifies lists the verify records a delete removes, as oldDrills does the drill
// records: all but the newest KeepDrills and the newest that passed.
func oldVerifies(ctx context.Context, r *repo.Repo, now time.Time) ([]repo.DrillKey, error) {
	keys, err := r.ListVerifyKeys(ctx)
	if err != nil {
		return nil, err
	}
	return OldDrills(notFuture(keys, now), KeepDrills), nil
}

// notFuture leaves out of keys (oldest first) the records dated after now +
// repo.DrillClockSlack (a host's wrong clock, as status warns): they are neither
// removed nor counted among the newest kept, where they would displace the real last
// success. (Nor removed: with this host's clock behind, every record would look so.)
func notFuture(keys []repo.DrillKey, now time.Time) []repo.DrillKey {
	for len(keys) > 0 && keys[len(keys)-1].Finished.After(now.Add(repo.DrillClockSlack)) {
		keys = keys[:len(keys)-1]
	}
	return keys
}
