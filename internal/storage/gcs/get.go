package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"

	gs "cloud.google.com/go/storage"

	"github.com/pgb-project/pgb/internal/storage"
)

// Get opens key's object at off, for length bytes (to the end when length < 0). The
// reader fails with ctx's error once ctx is done, and with io.ErrUnexpectedEOF when
// the body ends before the bytes the server announced. The client resumes a body that
// breaks off (a reset connection) from where it stopped, pinned to the same object
// generation.
//
// GCS refuses a range that starts at the end of the object; Get answers it, and any
// Get of zero bytes, from the object's size: nothing at off == size, ErrInvalidRange
// past it.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, s.translateError("get", key, err)
	}
	if off < 0 {
		return nil, fmt.Errorf("gcs: get %q: %w: negative offset %d", key, storage.ErrInvalidRange, off)
	}
	obj := s.idem.Object(name)
	if length == 0 {
		return s.emptyRange(ctx, obj, key, off)
	}
	r, err := obj.NewRangeReader(ctx, off, length)
	if err != nil {
		err = s.translateError("get", key, ctxFirst(ctx, err))
		if errors.Is(err, storage.ErrInvalidRange) {
			return s.emptyRange(ctx, obj, key, off)
		}
		return nil, s.confirmNotExist(ctx, "get", key, err)
	}
	want := int64(-1) // unknown: the client decompressed the body
	if !r.Attrs.Decompressed {
		want = max(r.Attrs.Size-off, 0)
		if length > 0 {
			want = min(want, length)
		}
	}
	return &reader{ctx: ctx, s: s, key: key, r: r, left: want}, nil
}

// emptyRange answers a Get of no bytes at off from the object's size.
func (s *Store) emptyRange(ctx context.Context, obj *gs.ObjectHandle, key string, off int64) (io.ReadCloser, error) {
	attrs, err := obj.Attrs(ctx)
	if err != nil {
		return nil, s.confirmNotExist(ctx, "get", key, s.translateError("get", key, ctxFirst(ctx, err)))
	}
	if off > attrs.Size {
		return nil, fmt.Errorf("gcs: get %q: %w: offset %d, size %d", key, storage.ErrInvalidRange, off, attrs.Size)
	}
	return &reader{ctx: ctx, s: s, key: key, r: eofReader{}, left: 0}, nil
}

// ctxFirst returns err marked with ctx's error when ctx is done: a cancelled call
// may fail with a less telling error first.
func ctxFirst(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%s)", cerr, err.Error()) // only ctx's error is in the chain
	}
	return err
}

// reader counts the bytes of a Get body against what was announced.
type reader struct {
	ctx  context.Context
	s    *Store
	key  string
	r    io.ReadCloser
	left int64 // bytes still due; -1 when unknown
}

func (rd *reader) Read(p []byte) (int, error) {
	if err := rd.ctx.Err(); err != nil {
		return 0, rd.s.translateError("get", rd.key, err)
	}
	n, err := rd.r.Read(p)
	if rd.left >= 0 {
		if int64(n) > rd.left {
			return 0, fmt.Errorf("gcs: get %q: the server sent more bytes than it announced", rd.key)
		}
		rd.left -= int64(n)
	}
	switch {
	case err == io.EOF && rd.left > 0:
		return n, fmt.Errorf("gcs: get %q: object ended %d bytes early: %w", rd.key, rd.left, io.ErrUnexpectedEOF)
	case err == nil, err == io.EOF:
		return n, err
	}
	return n, rd.s.translateError("get", rd.key, ctxFirst(rd.ctx, err))
}

func (rd *reader) Close() error { return rd.r.Close() }

// eofReader is the body of an empty range.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
func (eofReader) Close() error             { return nil }
