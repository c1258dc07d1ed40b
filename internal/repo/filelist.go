package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/pgb-project/pgb/internal/crc32c"
)

// FileList holds a backup's file entries outside memory, part by part, in a temporary
// file: backup-push adds each part's entries as the part is written and copies them
// into the manifest at the end; restore puts the entries of the manifest it reads
// there and goes through them part by part. Memory stays the same whatever the file
// count: about 64 KiB per part being added, and a few words per 64 KiB of entries.
//
// The temporary file is removed from its directory as soon as it is created: it takes
// disk space (some 150 bytes per file) only while the list is open, and is never left
// behind, not even by a killed process. Each chunk of it carries a CRC-32C, checked
// when it is read back.
type FileList struct {
	mu    sync.Mutex
	f     *os.File
	end   int64
	parts map[int]*listPart
	err   error // the first write error: the list is unusable
}

type listPart struct {
	chunks  []listChunk
	files   int
	size    int64
	writing bool
	done    bool
}

type listChunk struct {
	off int64
	n   int
	crc uint32
}

// Each chunk of a FileList holds entries of one part: up to listChunkSize bytes and
// the entry that crosses it. An entry is at most maxEntryLine bytes.
const (
	listChunkSize = 64 << 10
	maxEntryLine  = 16 << 10
	maxPathLen    = 4096
)

// NewFileList makes an empty list in a temporary file with no name (see TempFile) in
// dir (the system's temporary directory, $TMPDIR, when dir is "").
func NewFileList(dir string) (*FileList, error) {
	f, err := TempFile(dir, ".pgb-files-*")
	if err != nil {
		return nil, fmt.Errorf("file list: %w", err)
	}
	return &FileList{f: f, parts: map[int]*listPart{}}, nil
}

// Close releases the list and its disk space.
func (l *FileList) Close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

// ErrListed means a part's entries were added twice to a FileList.
var ErrListed = errors.New("part already listed")

// Writer adds the entries of one part, in the order the part holds them. Each part
// gets one writer, which must be closed.
func (l *FileList) Writer(part int) (*FileListWriter, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.parts[part] != nil {
		return nil, fmt.Errorf("part %d: %w", part, ErrListed)
	}
	p := &listPart{writing: true}
	l.parts[part] = p
	return &FileListWriter{l: l, p: p}, nil
}

// FileListWriter adds one part's entries to a FileList.
type FileListWriter struct {
	l   *FileList
	p   *listPart
	buf []byte
}

// Add appends f, encoded as it goes into the manifest.
func (w *FileListWriter) Add(f *File) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if len(b) >= maxEntryLine {
		return fmt.Errorf("file %.100q…: its manifest entry is longer than %d bytes", f.Path, maxEntryLine)
	}
	w.buf = append(append(w.buf, b...), '\n')
	w.p.files++
	w.p.size += f.Size
	if len(w.buf) >= listChunkSize {
		return w.flush()
	}
	return nil
}

func (w *FileListWriter) addLine(line []byte, size int64) error {
	w.buf = append(w.buf, line...)
	w.p.files++
	w.p.size += size
	if len(w.buf) >= listChunkSize {
		return w.flush()
	}
	return nil
}

func (w *FileListWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	l := w.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	c := listChunk{off: l.end, n: len(w.buf), crc: crc32c.Checksum(w.buf)}
	if _, err := l.f.WriteAt(w.buf, c.off); err != nil {
		l.err = fmt.Errorf("file list: %w", err)
		return l.err
	}
	l.end += int64(c.n)
	w.p.chunks = append(w.p.chunks, c)
	w.buf = w.buf[:0]
	return nil
}

// Close writes what is left of the part's entries.
func (w *FileListWriter) Close() error {
	err := w.flush()
	w.buf = nil
	w.l.mu.Lock()
	w.p.writing, w.p.done = false, err == nil
	w.l.mu.Unlock()
	return err
}

// Parts returns the numbers of the parts listed, in increasing order.
func (l *FileList) Parts() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]int, 0, len(l.parts))
	for n := range l.parts {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Count returns how many entries the list holds and the sum of their sizes.
func (l *FileList) Count() (files int, size int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.parts {
		files += p.files
		size += p.size
	}
	return files, size
}

// PartCount returns how many entries part n has (0 when it has none).
func (l *FileList) PartCount(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.parts[n]; p != nil {
		return p.files
	}
	return 0
}

// ErrListDamaged means a FileList's temporary file did not read back as written.
var ErrListDamaged = errors.New("the temporary file list read back damaged")

// eachLine calls fn with every entry line of part n (its newline included), in the
// order they were added. The line is valid only during the call.
func (l *FileList) eachLine(n int, fn func(line []byte) error) error {
	l.mu.Lock()
	p := l.parts[n]
	if p == nil {
		l.mu.Unlock()
		return nil
	}
	if !p.done {
		l.mu.Unlock()
		return fmt.Errorf("file list: part %d is incomplete", n)
	}
	chunks := p.chunks
	l.mu.Unlock()
	var buf []byte
	for _, c := range chunks {
		buf = slices.Grow(buf[:0], c.n)[:c.n]
		if _, err := l.f.ReadAt(buf, c.off); err != nil {
			return fmt.Errorf("file list: %w", err)
		}
		if crc32c.Checksum(buf) != c.crc {
			return fmt.Errorf("file list at %d: %w", c.off, ErrListDamaged)
		}
		for len(buf) > 0 {
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				return fmt.Errorf("file list at %d: %w", c.off, ErrListDamaged)
			}
			if err := fn(buf[:i+1]); err != nil {
				return err
			}
			buf = buf[i+1:]
		}
	}
	return nil
}

// Each calls fn with every entry of part n, in the order they were added. The entry is
// valid only during the call.
func (l *FileList) Each(n int, fn func(*File) error) error {
	var f File
	return l.eachLine(n, func(line []byte) error {
		f = File{}
		if err := json.Unmarshal(line, &f); err != nil {
			return fmt.Errorf("file list: %w: %w", ErrListDamaged, err)
		}
		return fn(&f)
	})
}
