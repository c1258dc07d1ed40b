package gcs

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pgb-project/pgb/internal/storage"
)

// GCS's JSON API has a batch endpoint, but the Go client library offers no batch
// delete: DeleteBatch sends single deletes, a bounded number at once.
const (
	// deleteBatch is the most keys one DeleteBatch takes.
	deleteBatch = 100
	// deleteParallel is how many deletes of a batch run at once.
	deleteParallel = 16
)

// MaxBatch is the most keys one DeleteBatch takes.
func (s *Store) MaxBatch() int { return deleteBatch }

// DeleteBatch removes the objects under keys with up to 16 single deletes at once
// (see storage.BatchDeleter); a missing object counts as deleted. Every key is
// tried; the keys that failed are named in a *storage.BatchError.
func (s *Store) DeleteBatch(ctx context.Context, keys []string) error {
	if len(keys) > deleteBatch {
		return fmt.Errorf("gcs: delete batch of %d keys, more than %d", len(keys), deleteBatch)
	}
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if err := storage.ValidKey(k); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return s.translateError("delete", keys[0], err)
	}
	var (
		mu     sync.Mutex
		failed = map[string]error{}
		wg     sync.WaitGroup
		slots  = make(chan struct{}, deleteParallel)
	)
	for _, k := range keys {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := s.Delete(ctx, k); err != nil && !errors.Is(err, storage.ErrNotExist) {
				mu.Lock()
				failed[k] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return storage.NewBatchError("gcs: delete batch", keys, failed)
}
