package backup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/pgb-project/pgb/internal/repo"
)

// Walking keeps the cluster's small files out of memory: a cluster may have hundreds of
// thousands of them (a relation file each, most of them empty or a few pages). Files of
// smallFile bytes or more (few: at most one per MiB of data) stay in tree.files, biggest
// first; the others go, in walk order, to a temporary file, in batches of smallBatch
// that the workers take after the big files.
const (
	smallFile  = 1 << 20
	smallBatch = 256
)

// smallFiles is the walk's list of small files: an unlinked temporary file in $TMPDIR
// (never left behind) and where each batch of it starts.
type smallFiles struct {
	f       *os.File
	w       *bufio.Writer
	end     int64 // bytes written
	batches []batch
	cur     batch
	rec     []byte
}

// batch is a run of small files in smallFiles: n records from off, bytes long.
type batch struct {
	off   int64
	bytes int
	n     int
}

func newSmallFiles() (*smallFiles, error) {
	f, err := repo.TempFile("", ".pgb-walk-*")
	if err != nil {
		return nil, fmt.Errorf("list of small files: %w", err)
	}
	return &smallFiles{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// add appends a file's entry: size, mode, path (abs is not kept: see entry.where).
func (s *smallFiles) add(e entry) error {
	s.rec = binary.AppendUvarint(s.rec[:0], uint64(e.size))
	s.rec = binary.AppendUvarint(s.rec, uint64(e.mode))
	s.rec = binary.AppendUvarint(s.rec, uint64(len(e.path)))
	s.rec = append(s.rec, e.path...)
	if _, err := s.w.Write(s.rec); err != nil {
		return fmt.Errorf("list of small files: %w", err)
	}
	s.end += int64(len(s.rec))
	s.cur.bytes += len(s.rec)
	s.cur.n++
	if s.cur.n == smallBatch {
		s.batches = append(s.batches, s.cur)
		s.cur = batch{off: s.end}
	}
	return nil
}

// finish ends the list: what was added can be read.
func (s *smallFiles) finish() error {
	if s.cur.n > 0 {
		s.batches = append(s.batches, s.cur)
		s.cur = batch{off: s.end}
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("list of small files: %w", err)
	}
	return nil
}

func (s *smallFiles) close() {
	if s != nil {
		_ = s.f.Close() // unlinked scratch: nothing to keep
	}
}

var errSmallDamaged = errors.New("the temporary list of small files read back damaged")

// each calls fn with every file of batch b, in the order they were added.
func (s *smallFiles) each(b batch, fn func(entry) error) error {
	buf := make([]byte, b.bytes)
	if _, err := s.f.ReadAt(buf, b.off); err != nil {
		return fmt.Errorf("list of small files: %w", err)
	}
	for range b.n {
		size, k := binary.Uvarint(buf)
		if k <= 0 {
			return errSmallDamaged
		}
		buf = buf[k:]
		mode, k := binary.Uvarint(buf)
		if k <= 0 {
			return errSmallDamaged
		}
		buf = buf[k:]
		n, k := binary.Uvarint(buf)
		if k <= 0 || n > uint64(len(buf)-k) {
			return errSmallDamaged
		}
		e := entry{size: int64(size), mode: fs.FileMode(mode), path: string(buf[k : k+int(n)])}
		buf = buf[k+int(n):]
		if err := fn(e); err != nil {
			return err
		}
	}
	if len(buf) != 0 {
		return errSmallDamaged
	}
	return nil
}

// item is what a worker gets: one big file, or a batch of small ones.
type item struct {
	big   entry
	batch *batch
}

// items is the work of a backup: the big files, biggest first, then the batches of
// small files.
func (t *tree) items() []item {
	out := make([]item, 0, len(t.files)+len(t.smallBatches()))
	for _, e := range t.files {
		out = append(out, item{big: e})
	}
	for i := range t.smallBatches() {
		out = append(out, item{batch: &t.small.batches[i]})
	}
	return out
}

func (t *tree) smallBatches() []batch {
	if t.small == nil {
		return nil
	}
	return t.small.batches
}

// each calls fn with every file of it.
func (t *tree) each(it item, fn func(entry) error) error {
	if it.batch == nil {
		return fn(it.big)
	}
	return t.small.each(*it.batch, fn)
}

// allFiles returns every file of the walk: the big ones first, biggest first, and
// pg_control last.
func (t *tree) allFiles() ([]entry, error) {
	var out []entry
	for _, it := range t.items() {
		if err := t.each(it, func(e entry) error { out = append(out, e); return nil }); err != nil {
			return nil, err
		}
	}
	if t.control != nil {
		out = append(out, *t.control)
	}
	return out, nil
}
