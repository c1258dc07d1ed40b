package storage

import (
	"context"
	"errors"
	"fmt"
)

// BatchDeleter is implemented by stores that delete several objects in one request
// (S3 DeleteObjects) or otherwise faster together than one by one (GCS: parallel
// single deletes). Callers use DeleteAll, which falls back to Delete one key at a time
// for stores without it.
//
// Contract, tested for every backend by storagetest.Run (through DeleteAll):
//   - MaxBatch is the most keys one DeleteBatch call takes, at least 1; 0 means the
//     store cannot delete in batches after all (a wrapper over a store without it)
//     and DeleteBatch must not be called.
//   - DeleteBatch removes the objects under keys (no more than MaxBatch, no key
//     twice). A key without an object counts as deleted, unlike with Delete: a batch
//     request cannot tell (S3 answers success for both), and every caller deletes to
//     be rid of the object. Invalid keys give ErrInvalidKey before anything is
//     deleted.
//   - It returns nil only when every object is gone. Otherwise its error names the
//     keys that failed and why (a partial failure is never silent), and any subset of
//     keys may have been deleted: the order inside one batch is the store's. Calling
//     it again with the same keys is safe.
//   - It honours ctx as every Store method does.
//
// Wrappers (retry, idle, limit, faulty) implement it by passing it to the store they
// wrap, so that a batch keeps their behaviour (retries, injected faults); they answer
// MaxBatch 0 when the store below has no batch delete.
type BatchDeleter interface {
	MaxBatch() int
	DeleteBatch(ctx context.Context, keys []string) error
}

// MaxBatch is st's MaxBatch when st is a BatchDeleter, else 0.
func MaxBatch(st Store) int {
	if b, ok := st.(BatchDeleter); ok {
		return max(b.MaxBatch(), 0)
	}
	return 0
}

// DeleteAll removes the objects under keys in order: in batches of st's MaxBatch keys
// when st is a BatchDeleter, else one Delete per key. Each batch (or key) starts only
// once the ones before it are gone, so that an interrupted DeleteAll leaves the keys
// of the later batches in place; only the batch in flight may be half done. A key
// without an object counts as deleted. Every key is checked with ValidKey before
// anything is deleted.
func DeleteAll(ctx context.Context, st Store, keys []string) error {
	for _, k := range keys {
		if err := ValidKey(k); err != nil {
			return err
		}
	}
	n := MaxBatch(st)
	if n == 0 {
		for _, k := range keys {
			if err := st.Delete(ctx, k); err != nil && !errors.Is(err, ErrNotExist) {
				return err
			}
		}
		return nil
	}
	b := st.(BatchDeleter)
	for len(keys) > 0 {
		batch := keys[:min(n, len(keys))]
		keys = keys[len(batch):]
		if err := b.DeleteBatch(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// BatchError is the error of a DeleteBatch that failed for some keys: Failed maps
// each key that failed to its error. It wraps the first failure's error (in the
// batch's key order), so that errors.Is and retry decisions see a real cause.
type BatchError struct {
	Op     string // names the store and operation, e.g. "s3: delete objects"
	Keys   int    // keys in the batch
	Failed map[string]error
	First  string // the first key that failed, in the batch's order
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("%s: %d of %d objects not deleted, first %q: %v", e.Op, len(e.Failed), e.Keys, e.First, e.Failed[e.First])
}

// Unwrap returns the first failure's error.
func (e *BatchError) Unwrap() error { return e.Failed[e.First] }

// Retryable is false when any key failed with an error marked Permanent: another
// attempt cannot delete that one. Otherwise the first failure decides, as for any
// error (see package retry).
func (e *BatchError) Retryable() bool {
	for _, err := range e.Failed {
		if IsPermanent(err) {
			return false
		}
	}
	var r interface{ Retryable() bool }
	if errors.As(e.Failed[e.First], &r) {
		return r.Retryable()
	}
	return true
}

// NewBatchError returns a *BatchError for the keys of batch that failed (failed maps
// them to their errors), or nil when none did.
func NewBatchError(op string, batch []string, failed map[string]error) error {
	if len(failed) == 0 {
		return nil
	}
	e := &BatchError{Op: op, Keys: len(batch), Failed: failed}
	for _, k := range batch {
		if _, ok := failed[k]; ok {
			e.First = k
			break
		}
	}
	if e.First == "" { // keys outside the batch: still report one
		for k := range failed {
			if e.First == "" || k < e.First {
				e.First = k
			}
		}
	}
	return e
}
