// Package storage defines the one interface every repository backend implements
// (filesystem, in-memory, and later S3 and GCS) together with its sentinel errors.
//
// The package imports nothing of the engine: backends only move opaque bytes under
// slash-separated keys. Compression, encryption and checksums live above it.
package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors. Backends translate their native errors into these once, at the
// edge, and wrap them with %w so callers test with errors.Is.
var (
	// ErrNotExist: the key does not exist.
	ErrNotExist = errors.New("object does not exist")
	// ErrExist: a Put with IfAbsent found the key already present.
	ErrExist = errors.New("object already exists")
	// ErrUnsupported: the backend cannot honour the request (for example a store that
	// cannot enforce IfAbsent). Callers must not silently fall back to a weaker path.
	ErrUnsupported = errors.New("operation not supported by this storage")
	// ErrInvalidKey: the key is empty, absolute, or contains "." / ".." elements.
	ErrInvalidKey = errors.New("invalid object key")
	// ErrInvalidRange: a Get range starts past the end of the object.
	ErrInvalidRange = errors.New("invalid range")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string    // full key, relative to the store root, "/"-separated
	Size    int64     // bytes
	ModTime time.Time // last modification, as the backend reports it
}

// PutOptions tune a Put.
type PutOptions struct {
	// IfAbsent makes the Put fail with ErrExist when the key is already present.
	// The check is enforced by the store itself, atomically: two racing writers
	// never both succeed. A backend that cannot enforce it returns ErrUnsupported.
	//
	// ErrExist also promises that the existing object is durable, as a successful Put
	// would be: a caller that finds identical content counts the write as done (a
	// retried wal-push, after which PostgreSQL recycles the segment), yet the writer
	// that made the object visible may have died before making it durable (fs: killed
	// between link(2) and the directory fsync). The fs backend fsyncs the object and
	// its directories before answering ErrExist, and answers with another error if it
	// cannot; S3, GCS and mem objects are durable once visible.
	IfAbsent bool
	// Size is the number of bytes r will yield, or -1 when unknown. Backends may use it
	// to choose a single request over a multipart upload. It is a hint: the bytes read
	// from r are what is stored.
	Size int64
}

// Store is a repository's object storage.
//
// Keys are relative, "/"-separated paths without "." or ".." elements (see ValidKey).
//
// Contract, tested for every backend by storagetest.Run:
//   - Put is atomic: readers see either no object or the complete object, never a
//     partial one. Put returns nil only once the object is durable (fsync'ed / acknowledged
//     by the server). If r returns an error, or ctx is cancelled, nothing is left behind
//     and the previous object under the key (if any) is untouched.
//   - Read-after-write: a successful Put is visible to Get, Stat and List at once.
//   - Get streams the object from offset off; length < 0 means to the end. A range that
//     starts past the end is ErrInvalidRange; one that starts at the end (off == size) or
//     runs past it yields the bytes that exist. The reader returns an error, never a clean
//     io.EOF, when the object turns out shorter than announced.
//   - Missing keys give an error wrapping ErrNotExist from Get, Stat and Delete.
//   - List calls fn for every object whose key starts with prefix, in lexical key order,
//     page by page for large listings; it stops early and returns fn's error if fn fails,
//     and ctx's error if ctx is cancelled.
//   - Every method honours ctx: a cancelled context ends the call with ctx's error.
//
// A store may also delete in batches (BatchDeleter); callers delete many keys with
// DeleteAll, which uses the batches where there are any.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) error
	Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	Delete(ctx context.Context, key string) error
	// String names the store for messages, without secrets (e.g. "file:///var/lib/pgb").
	String() string
	// Close releases resources (connections, file handles).
	Close() error
}

// Unwrap returns the backend under wrappers (retry, idle, faulty) that implement
// Unwrap() Store.
func Unwrap(st Store) Store {
	for {
		u, ok := st.(interface{ Unwrap() Store })
		if !ok {
			return st
		}
		st = u.Unwrap()
	}
}
