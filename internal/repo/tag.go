package repo

import (
	"hash"
	"hash/crc32"

	"github.com/pgb-project/pgb/internal/crc32c"
	"github.com/pgb-project/pgb/internal/envelope"
)

// tagWriter computes what an encrypted object's keyed tag covers (envelope.Tag) for
// the bytes written to it, without sealing them.
type tagWriter struct {
	c, ieee hash.Hash32
	n       int64
}

func newTagWriter() *tagWriter { return &tagWriter{c: crc32c.New(), ieee: crc32.NewIEEE()} }

func (t *tagWriter) Write(p []byte) (int, error) {
	t.c.Write(p)
	t.ieee.Write(p)
	t.n += int64(len(p))
	return len(p), nil
}

func (t *tagWriter) tag(key []byte, id [3]byte, set [8]byte) Sum {
	return envelope.Tag(key, id, set, t.n, t.c.Sum32(), t.ieee.Sum32())
}
