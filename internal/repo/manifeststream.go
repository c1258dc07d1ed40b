package repo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/pgb-project/pgb/internal/pagemap"
	"github.com/pgb-project/pgb/internal/storage"
)

// ManifestFormat is the manifest format pgb writes (Summary.Format).
//
// Format 1 is one JSON object, its files sorted by path: reading it means holding it
// whole. Format 2 (a streamed file list) is the same object without its files on the
// first line, then one line per file: the JSON of its File, ordered by part, then by
// offset in the part (the order of the part's tar stream). A reader holds only the
// header and one entry at a time. Every part lists its file offsets.
const ManifestFormat = 2

// IncrementalFormat is the manifest format of an incremental backup: format 2 whose
// summary names a Parent, and whose file list may start with files unchanged since
// it (part 0) and hold page maps (see File). A pgb that reads only format 2 refuses it
// as newer, rather than restoring a part of a cluster as if it were the whole.
const IncrementalFormat = 3

// streamedPrefix is how a format 2 (or later) manifest begins: json.Marshal writes the
// summary's format first.
const streamedPrefix = `{"format":`

// DefaultManifestHeaderLimit bounds the first line of a format 2 manifest: its header,
// which holds the parts, directories and links but no files (a real one is a few MiB at
// most). Options.ManifestHeaderLimit overrides it.
const DefaultManifestHeaderLimit = 64 << 20

// manifestHeader is the first line of a format 2 manifest: the manifest without files.
type manifestHeader struct {
	*Manifest
	Files []File `json:"files,omitempty"` // never set: it hides the manifest's own
}

// writeStreamed writes m, whose files are in m.List, in format 2.
func writeStreamed(w io.Writer, m *Manifest) error {
	hdr, err := json.Marshal(manifestHeader{Manifest: m})
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.Write(append(hdr, '\n')); err != nil {
		return err
	}
	parts := slices.Clone(m.Parts)
	slices.SortFunc(parts, func(a, b Part) int { return a.N - b.N })
	// The files unchanged since the parent (incremental backups) come first.
	listed := m.List.PartCount(0)
	if listed > 0 && m.Parent == "" {
		return fmt.Errorf("manifest of backup %s: %d files are listed unchanged, but it has no parent backup", m.Name, listed)
	}
	if err := m.List.eachLine(0, func(line []byte) error {
		_, err := bw.Write(line)
		return err
	}); err != nil {
		return err
	}
	for _, pt := range parts {
		if got := m.List.PartCount(pt.N); got != pt.Files || (got > 0 && !pt.FileOffsets) {
			return fmt.Errorf("manifest of backup %s: part %d counts %d files, its list holds %d", m.Name, pt.N, pt.Files, got)
		}
		listed += pt.Files
		if err := m.List.eachLine(pt.N, func(line []byte) error {
			_, err := bw.Write(line)
			return err
		}); err != nil {
			return err
		}
	}
	if total, _ := m.List.Count(); total != listed {
		return fmt.Errorf("manifest of backup %s: its file list holds %d files, its parts %d", m.Name, total, listed)
	}
	return bw.Flush()
}

// putStreamOrSame stores what write writes under key if absent, or finds exactly that
// already there. write must write the same bytes every time.
func (r *Repo) putStreamOrSame(ctx context.Context, key string, write func(io.Writer) error, what string) error {
	err := r.putStream(ctx, key, write)
	if !errors.Is(err, storage.ErrExist) {
		return err
	}
	same, cerr := r.storedEqualsStream(ctx, key, write)
	return foundStored(err, same, cerr, what, key)
}

// putStream stores what write writes, sealed and zstd-compressed, only if absent,
// without holding the document in memory: it is sealed into a temporary file with no
// name in $TMPDIR (see TempFile), which is then stored. The file, unlike a pipe, can be read again, so the storage layer retries a
// failed upload as it does for every small document.
func (r *Repo) putStream(ctx context.Context, key string, write func(io.Writer) error) error {
	f, err := TempFile("", ".pgb-doc-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	defer func() { _ = f.Close() }() // a scratch copy: what is stored is checked by the store
	if err := r.sealing(ctx, key); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	w, err := r.seal(bw, r.docCodec, key)
	if err != nil {
		return err
	}
	if err := write(w); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return r.st.Put(ctx, key, f, storage.PutOptions{IfAbsent: true, Size: size})
}

// storedEqualsStream reports whether the object stored under key decodes to exactly
// what write writes, reading it alongside.
func (r *Repo) storedEqualsStream(ctx context.Context, key string, write func(io.Writer) error) (bool, error) {
	same, decided, err := r.sameByTag(ctx, key, write)
	if decided || err != nil {
		return same, err
	}
	o, err := r.open(ctx, key)
	if err != nil {
		return false, err
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	c := &compareWriter{r: o}
	if err := write(c); err != nil {
		return false, err
	}
	if c.err != nil {
		return false, c.err
	}
	if c.differ {
		return false, nil
	}
	// The size and checksum are checked only at the end; anything more differs.
	n, err := io.Copy(io.Discard, o)
	if err != nil {
		return false, err
	}
	return n == 0, nil
}

// compareWriter compares what is written with what r reads.
type compareWriter struct {
	r      io.Reader
	buf    []byte
	differ bool
	err    error
}

func (c *compareWriter) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0 && !c.differ && c.err == nil; {
		k := min(len(rest), 64<<10)
		if len(c.buf) < k {
			c.buf = make([]byte, 64<<10)
		}
		n, err := io.ReadFull(c.r, c.buf[:k])
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			c.differ = true
		case err != nil:
			c.err = err
		case !bytes.Equal(c.buf[:n], rest[:k]):
			c.differ = true
		}
		rest = rest[k:]
	}
	return len(p), nil
}

// streamed reports whether a manifest's first line is that of format 2 or later.
func streamed(first []byte) bool {
	rest, ok := bytes.CutPrefix(first, []byte(streamedPrefix))
	if !ok {
		return false
	}
	i := 0
	for i < len(rest) && i < 9 && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	v, err := strconv.Atoi(string(rest[:i]))
	return err == nil && v >= 2
}

// readManifestFrom reads the manifest of backup name, stored in storedSize bytes.
// A format 1 manifest is read whole. The files of a format 2 manifest go to list when
// it is not nil (which then holds them: m.List is set and m.Files stays empty), else
// into m.Files, sorted by path as format 1 has them.
func (r *Repo) readManifestFrom(ctx context.Context, name string, storedSize int64, list *FileList) (*Manifest, error) {
	limit := manifestLimit(storedSize)
	why := fmt.Sprintf("pgb allows a manifest %dx its stored size of %s, at least %s and at most %s",
		manifestRatio, sizeText(storedSize), sizeText(manifestFloor), sizeText(manifestCap))
	key := ManifestKey(name)
	o, err := r.open(ctx, key)
	if err != nil {
		return nil, backupDocError(name, "manifest", err)
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	lr := &io.LimitedReader{R: o, N: limit + 1}
	br := bufio.NewReaderSize(lr, 64<<10)
	tooLarge := func() error {
		return backupDocError(name, "manifest", fmt.Errorf("%s is %w: it decodes to more than %s (%s): %w", key, ErrTooLarge, sizeText(limit), why, ErrCorrupt))
	}
	readErr := func(err error) error {
		if lr.N <= 0 {
			return tooLarge()
		}
		return backupDocError(name, "manifest", fmt.Errorf("%s: %w", key, err))
	}
	// The first line: a format 2 header (at most r.maxHeaderLine bytes), or a whole
	// format 1 manifest.
	var first []byte
	for {
		b, err := br.ReadSlice('\n')
		first = append(first, b...)
		if len(first) > r.maxHeaderLine && streamed(first) {
			// Read on, as below: a damaged object is reported corrupt.
			if _, err := io.Copy(io.Discard, br); errors.Is(err, ErrCorrupt) {
				return nil, backupDocError(name, "manifest", fmt.Errorf("%s: %w", key, err))
			}
			return nil, backupDocError(name, "manifest", fmt.Errorf("%s: its header line is %w: longer than %s: %w",
				key, ErrTooLarge, sizeText(int64(r.maxHeaderLine)), ErrCorrupt))
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, readErr(err)
		}
		break
	}
	if lr.N <= 0 {
		return nil, tooLarge()
	}
	var m Manifest
	if !streamed(first) {
		rest, err := io.ReadAll(br)
		if err != nil {
			return nil, readErr(err)
		}
		if lr.N <= 0 {
			return nil, tooLarge()
		}
		if err := json.Unmarshal(append(first, rest...), &m); err != nil {
			return nil, backupDocError(name, "manifest", fmt.Errorf("%s: %w: %w", key, ErrCorrupt, err))
		}
		if err := checkSummary(name, &m.Summary); err != nil {
			return nil, err
		}
		return &m, checkCounts(name, &m)
	}
	// A damaged object decodes to garbage before its checksum, checked at its end,
	// fails: what does not parse is read on to the end, so that a damaged object is
	// reported as such (corrupt), and only a well-stored one as a bad manifest.
	corrupt := func() error {
		if _, err := io.Copy(io.Discard, br); errors.Is(err, ErrCorrupt) {
			return backupDocError(name, "manifest", fmt.Errorf("%s: %w", key, err))
		}
		return nil
	}
	if err := json.Unmarshal(first, &m); err != nil {
		if cerr := corrupt(); cerr != nil {
			return nil, cerr
		}
		return nil, backupDocError(name, "manifest", fmt.Errorf("%s: %w: %w", key, ErrCorrupt, err))
	}
	if err := checkSummary(name, &m.Summary); err != nil {
		if cerr := corrupt(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	damaged := func(format string, a ...any) error {
		if cerr := corrupt(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("manifest of backup %s is %w: %s", name, ErrDamagedBackup, fmt.Sprintf(format, a...))
	}
	parts, err := checkHeader(&m)
	if err != nil {
		return nil, damaged("%v", err)
	}
	var (
		prev    *File
		cur     File
		prevBuf File
		lw      *FileListWriter
		counts  = make(map[int]int, len(parts))
		size    int64
	)
	closeWriter := func() error {
		if lw == nil {
			return nil
		}
		err := lw.Close()
		lw = nil
		return err
	}
	defer func() { _ = closeWriter() }() // on the error paths: the list is dropped by the caller
	for i := range m.FileCount {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull) || (err == nil && len(line) > maxEntryLine):
			return nil, damaged("file entry %d is longer than %d bytes", i+1, maxEntryLine)
		case errors.Is(err, io.EOF):
			if lr.N <= 0 {
				return nil, tooLarge()
			}
			return nil, damaged("it lists %d of the %d files it counts", i, m.FileCount)
		case err != nil:
			return nil, readErr(err)
		}
		cur = File{}
		if err := json.Unmarshal(line, &cur); err != nil {
			return nil, damaged("file entry %d: %v", i+1, err)
		}
		pt := parts[cur.Part]
		if err := checkEntry(&cur, pt, prev, m.Parent != ""); err != nil {
			return nil, damaged("file entry %d: %v", i+1, err)
		}
		counts[cur.Part]++
		if pt != nil && counts[cur.Part] > pt.Files {
			return nil, damaged("part %d holds more files than the %d it counts", pt.N, pt.Files)
		}
		if size += cur.Size; size < 0 {
			return nil, damaged("the files' sizes overflow")
		}
		if list == nil {
			m.Files = append(m.Files, cur)
		} else {
			if prev == nil || prev.Part != cur.Part {
				if err := closeWriter(); err != nil {
					return nil, err
				}
				if lw, err = list.Writer(cur.Part); err != nil {
					return nil, err
				}
			}
			if err := lw.addLine(line, cur.Size); err != nil {
				return nil, err
			}
		}
		prevBuf = cur
		prev = &prevBuf
	}
	if err := closeWriter(); err != nil {
		return nil, err
	}
	// Nothing after the last entry; reading to the end checks the envelope.
	if n, err := io.Copy(io.Discard, br); err != nil {
		return nil, readErr(err)
	} else if n > 0 {
		return nil, damaged("%d bytes follow its last file entry", n)
	}
	unchanged := m.FileCount
	for _, pt := range parts {
		if counts[pt.N] != pt.Files {
			return nil, damaged("part %d counts %d files but lists %d", pt.N, pt.Files, counts[pt.N])
		}
		unchanged -= pt.Files
	}
	if counts[0] != unchanged {
		return nil, damaged("it counts %d files in no part but lists %d", unchanged, counts[0])
	}
	if size != m.Size {
		return nil, damaged("its files hold %d bytes, its summary says %d", size, m.Size)
	}
	if list == nil {
		m.Sort()
	} else {
		m.List = list
	}
	return &m, nil
}

// checkCounts checks the summary's counts against the lists of a manifest read whole.
func checkCounts(name string, m *Manifest) error {
	switch {
	case m.FileCount == 0 && m.PartCount == 0: // written before summaries: count
		m.FileCount, m.PartCount = len(m.Files), len(m.Parts)
	case m.FileCount != len(m.Files) || m.PartCount != len(m.Parts):
		return fmt.Errorf("manifest of backup %s is %w: it counts %d files in %d parts but lists %d in %d",
			name, ErrDamagedBackup, m.FileCount, m.PartCount, len(m.Files), len(m.Parts))
	}
	return nil
}

// checkHeader checks the first line of a format 2 manifest and returns its parts by
// number.
func checkHeader(m *Manifest) (map[int]*Part, error) {
	if m.Files != nil {
		return nil, errors.New("its header lists files")
	}
	if m.FileCount < 0 || m.Size < 0 || m.PartCount != len(m.Parts) {
		return nil, fmt.Errorf("it counts %d files in %d parts but lists %d parts", m.FileCount, m.PartCount, len(m.Parts))
	}
	parts := make(map[int]*Part, len(m.Parts))
	for i := range m.Parts {
		pt := &m.Parts[i]
		if pt.N < 1 || pt.N > len(m.Parts) || parts[pt.N] != nil {
			return nil, fmt.Errorf("part number %d is out of range or listed twice", pt.N)
		}
		if pt.Files < 0 || pt.Files > m.FileCount || pt.Size < 0 || pt.Stored < 0 {
			return nil, fmt.Errorf("part %d: impossible counts", pt.N)
		}
		parts[pt.N] = pt
	}
	if err := checkCorrupt(m); err != nil {
		return nil, err
	}
	return parts, nil
}

// checkCorrupt checks the pages a manifest says failed their checksum: what verify
// prints of them must be bounded and name real paths.
func checkCorrupt(m *Manifest) error {
	listed := 0
	for _, c := range m.Corrupt {
		if !ValidPath(c.Path) || len(c.Blocks) == 0 {
			return fmt.Errorf("its list of damaged pages names %.200q, not a file with blocks", c.Path)
		}
		for i := 1; i < len(c.Blocks); i++ {
			if c.Blocks[i] <= c.Blocks[i-1] {
				return fmt.Errorf("its damaged pages of %s are not in order", c.Path)
			}
		}
		listed += len(c.Blocks)
	}
	if listed > MaxCorruptListed || m.CorruptPages < listed {
		return fmt.Errorf("it counts %d damaged pages but lists %d (at most %d are listed)", m.CorruptPages, listed, MaxCorruptListed)
	}
	return nil
}

// checkEntry checks one file entry of a format 2 or 3 manifest: its path, its part and
// its place after prev. incremental says the manifest has a parent: only then may an
// entry be unchanged (part 0, listed first) or hold a page map.
func checkEntry(f *File, pt *Part, prev *File, incremental bool) error {
	if !ValidPath(f.Path) {
		return fmt.Errorf("path %.200q is not a relative path inside the backup", f.Path)
	}
	if f.Part == 0 && incremental {
		switch {
		case f.Offset != 0 || f.MapLen != 0 || f.Stored != 0 || f.Size < 0 || f.Mode&^0o7777 != 0:
			return fmt.Errorf("%s: unchanged since the parent, but with an offset, pages or an impossible size or mode", f.Path)
		case prev != nil && prev.Part != 0:
			return fmt.Errorf("%s: unchanged since the parent, but listed after files in parts", f.Path)
		case !validCRC(f.CRC):
			return fmt.Errorf("%s: checksum %.20q is no CRC-32C", f.Path, f.CRC)
		}
		return nil
	}
	if pt == nil {
		return fmt.Errorf("%s: part %d is not in the manifest", f.Path, f.Part)
	}
	if err := checkPages(f, incremental); err != nil {
		return err
	}
	if !pt.FileOffsets {
		return fmt.Errorf("%s: part %d lists no file offsets", f.Path, f.Part)
	}
	if f.Size < 0 || f.Offset < 0 || f.Mode&^0o7777 != 0 {
		return fmt.Errorf("%s: impossible size, offset or mode", f.Path)
	}
	if !validCRC(f.CRC) {
		return fmt.Errorf("%s: checksum %.20q is no CRC-32C", f.Path, f.CRC)
	}
	if prev != nil && (f.Part < prev.Part || f.Part == prev.Part && f.Offset <= prev.Offset) {
		return fmt.Errorf("%s (part %d at %d) comes after %s (part %d at %d): entries are ordered by part and offset",
			f.Path, f.Part, f.Offset, prev.Path, prev.Part, prev.Offset)
	}
	return nil
}

func validCRC(s string) bool {
	return len(s) == 8 && strings.Trim(s, "0123456789abcdef") == ""
}

// checkPages checks a Delta entry: only in an incremental backup, its map within
// MaxMapLen, and its stored bytes room for the map and at most every block (the map
// itself is checked when restore reads it, see File.ReadLayer).
func checkPages(f *File, incremental bool) error {
	switch {
	case f.MapLen == 0 && f.Stored == 0:
		return nil
	case f.MapLen == 0:
		return fmt.Errorf("%s: stored bytes without a page map", f.Path)
	case !incremental:
		return fmt.Errorf("%s: a page map in a backup with no parent", f.Path)
	case f.MapLen < 0 || f.Size < 0 || pagemap.Blocks(f.Size) > pagemap.MaxBlocks || f.MapLen > MaxMapLen(f.Size):
		return fmt.Errorf("%s: a page map of %d bytes for a file of %d bytes", f.Path, f.MapLen, f.Size)
	case f.Stored < f.MapLen || f.Stored-f.MapLen > f.Size:
		return fmt.Errorf("%s: %d bytes stored for a map of %d bytes and a file of %d", f.Path, f.Stored, f.MapLen, f.Size)
	}
	return nil
}

// ValidPath reports whether p is a path a backup may hold: relative, "/"-separated,
// clean (no "." or ".." component, no empty one), at most 4096 bytes, without NUL.
func ValidPath(p string) bool {
	return p != "" && len(p) <= maxPathLen && p[0] != '/' && path.Clean(p) == p && p != "." && p != ".." &&
		!strings.HasPrefix(p, "../") && !strings.ContainsRune(p, 0)
}
