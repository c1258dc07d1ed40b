// Package readonly wraps a store so that nothing is written through it: what a dry
// run promises ("nothing was written") holds by construction, whatever the code
// under it tries (a WAL summary cache, say, which then only computes).
package readonly

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pgb-project/pgb/internal/storage"
)

// ErrReadOnly is what Put and Delete return.
var ErrReadOnly = errors.New("read-only: nothing is written to the repository")

type store struct{ storage.Store }

// New is st with Put and Delete refused (ErrReadOnly, marked permanent: no retry).
// It has no batch delete, so storage.DeleteAll goes through Delete and is refused too.
func New(st storage.Store) storage.Store { return &store{st} }

func (s *store) Put(_ context.Context, key string, _ io.Reader, _ storage.PutOptions) error {
	return storage.Permanent(fmt.Errorf("put %s: %w", key, ErrReadOnly))
}

func (s *store) Delete(_ context.Context, key string) error {
	return storage.Permanent(fmt.Errorf("delete %s: %w", key, ErrReadOnly))
}

// Unwrap is the store below.
func (s *store) Unwrap() storage.Store { return s.Store }
