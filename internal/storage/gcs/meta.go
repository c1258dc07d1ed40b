package gcs

import (
	"context"
	"errors"
	"strings"

	gs "cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/pgb-project/pgb/internal/storage"
)

// Stat describes key's object: its size and its last update.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	name, err := s.object(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, s.translateError("stat", key, err)
	}
	attrs, err := s.idem.Object(name).Attrs(ctx)
	if err != nil {
		return storage.ObjectInfo{}, s.confirmNotExist(ctx, "stat", key, s.translateError("stat", key, ctxFirst(ctx, err)))
	}
	return storage.ObjectInfo{Key: key, Size: attrs.Size, ModTime: attrs.Updated}, nil
}

// Delete removes key's object. The client does not retry it (see the package
// comment).
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.object(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return s.translateError("delete", key, err)
	}
	if err := s.once.Object(name).Delete(ctx); err != nil {
		return s.confirmNotExist(ctx, "delete", key, s.translateError("delete", key, ctxFirst(ctx, err)))
	}
	return nil
}

// List calls fn for each object whose key starts with prefix, in lexical key order,
// fetching the listing page by page as fn consumes it. Objects under the store's
// prefix whose rest is not a valid key (such as "folder/" placeholders made by the
// console) are skipped. fn's error is returned as it is.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidPrefix(prefix); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return s.translateError("list", prefix, err)
	}
	q := &gs.Query{Prefix: s.prefix + prefix, Projection: gs.ProjectionNoACL}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated"}); err != nil {
		return s.translateError("list", prefix, err)
	}
	it := s.idem.Objects(ctx, q)
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return s.translateError("list", prefix, ctxFirst(ctx, err))
		}
		key, ok := strings.CutPrefix(attrs.Name, s.prefix)
		if !ok || !strings.HasPrefix(key, prefix) || storage.ValidKey(key) != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return s.translateError("list", prefix, err)
		}
		if err := fn(storage.ObjectInfo{Key: key, Size: attrs.Size, ModTime: attrs.Updated}); err != nil {
			return err
		}
	}
}
