// Package mem is an in-memory storage.Store, for tests and dry runs. It implements the
// whole storage contract, including atomic IfAbsent, and is safe for concurrent use.
// Nothing is persisted: "durable" means stored in the map.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgb-project/pgb/internal/storage"
)

// Store is an in-memory storage.Store. The zero value is not usable; call New.
type Store struct {
	// Batch, when above 0, makes the store a storage.BatchDeleter of Batch keys per
	// call, so that tests of the code above storage see batches as on S3. Set it
	// before use.
	Batch int

	mu      sync.RWMutex
	objs    map[string]object
	batches int
}

// object is one stored value. data is never modified after it is stored, so readers
// may share it without copying.
type object struct {
	data []byte
	mod  time.Time
}

var _ storage.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{objs: make(map[string]object)}
}

// Put reads r to its end and then stores the bytes under key in one step: if r fails or
// ctx is cancelled before that, nothing is stored and any previous object is untouched.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if err := storage.ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: put %q: %w", key, err)
	}
	if opts.IfAbsent {
		s.mu.RLock()
		_, ok := s.objs[key]
		s.mu.RUnlock()
		if ok { // fail before reading the data; the check under the write lock counts
			return fmt.Errorf("mem: put %q: %w", key, storage.ErrExist)
		}
	}
	var buf bytes.Buffer
	if opts.Size > 0 {
		buf.Grow(int(min(opts.Size, 64<<20)))
	}
	if _, err := buf.ReadFrom(ctxReader{ctx: ctx, r: r}); err != nil {
		return fmt.Errorf("mem: put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: put %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objs[key]; ok && opts.IfAbsent {
		return fmt.Errorf("mem: put %q: %w", key, storage.ErrExist)
	}
	s.objs[key] = object{data: buf.Bytes(), mod: time.Now()}
	return nil
}

// Get returns the object's bytes from off, at most length of them (all when length < 0).
// The reader fails with ctx's error once ctx is cancelled.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	o, err := s.lookup(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	size := int64(len(o.data))
	if off < 0 || off > size {
		return nil, fmt.Errorf("mem: get %q: %w: offset %d, size %d", key, storage.ErrInvalidRange, off, size)
	}
	end := size
	if length >= 0 && length < size-off {
		end = off + length
	}
	return io.NopCloser(ctxReader{ctx: ctx, r: bytes.NewReader(o.data[off:end])}), nil
}

// Stat describes the object under key.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	o, err := s.lookup(ctx, "stat", key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.mod}, nil
}

func (s *Store) lookup(ctx context.Context, op, key string) (object, error) {
	if err := storage.ValidKey(key); err != nil {
		return object{}, err
	}
	if err := ctx.Err(); err != nil {
		return object{}, fmt.Errorf("mem: %s %q: %w", op, key, err)
	}
	s.mu.RLock()
	o, ok := s.objs[key]
	s.mu.RUnlock()
	if !ok {
		return object{}, fmt.Errorf("mem: %s %q: %w", op, key, storage.ErrNotExist)
	}
	return o, nil
}

// List calls fn for each object whose key starts with prefix, in lexical key order. It
// works on a snapshot taken at the start, so fn may call back into the store.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidPrefix(prefix); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: list %q: %w", prefix, err)
	}
	var infos []storage.ObjectInfo
	s.mu.RLock()
	for k, o := range s.objs {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, storage.ObjectInfo{Key: k, Size: int64(len(o.data)), ModTime: o.mod})
		}
	}
	s.mu.RUnlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mem: list %q: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object under key.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := storage.ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: delete %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objs[key]; !ok {
		return fmt.Errorf("mem: delete %q: %w", key, storage.ErrNotExist)
	}
	delete(s.objs, key)
	return nil
}

// MaxBatch is Batch: the store deletes in batches only when a test sets it.
func (s *Store) MaxBatch() int { return s.Batch }

// DeleteBatch removes the objects under keys at once, under one lock; missing keys
// count as deleted (see storage.BatchDeleter).
func (s *Store) DeleteBatch(ctx context.Context, keys []string) error {
	if len(keys) > s.Batch {
		return fmt.Errorf("mem: delete batch of %d keys, more than %d", len(keys), s.Batch)
	}
	for _, k := range keys {
		if err := storage.ValidKey(k); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: delete batch: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches++
	for _, k := range keys {
		delete(s.objs, k)
	}
	return nil
}

// Batches is the number of DeleteBatch calls the store has served.
func (s *Store) Batches() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.batches
}

// String names the store.
func (s *Store) String() string { return "mem:" }

// Close does nothing; the store stays usable.
func (s *Store) Close() error { return nil }

// ctxReader fails with ctx's error, between reads, once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
