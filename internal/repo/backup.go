package repo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/envelope"
	"github.com/pgb-project/pgb/internal/storage"
)

// PutBackup records a complete backup: its summary, then its manifest, which makes
// the backup exist. It never replaces an existing manifest. When one is already there
// with exactly this content, the write counts as done: a retried put whose first
// attempt was stored but lost its acknowledgement (S3, GCS) finds its own manifest.
// Other content fails with an error wrapping storage.ErrExist and leaves the stored
// manifest untouched.
//
// A manifest whose files are in m.List is written in format 2, streamed from the list
// (never whole in memory); one with m.Files in format 1.
func (r *Repo) PutBackup(ctx context.Context, m *Manifest) error {
	if m.List != nil {
		if len(m.Files) > 0 {
			return fmt.Errorf("manifest of backup %s: files both in memory and in a list", m.Name)
		}
		m.Format = ManifestFormat
		if m.Parent != "" {
			m.Format = IncrementalFormat
		}
		m.FileCount, m.Size = m.List.Count()
	} else {
		m.Format = FormatVersion
		m.FileCount = len(m.Files)
	}
	m.PartCount = len(m.Parts)
	m.Encryption = r.encryptionInfo()
	if err := r.putOrSame(ctx, SummaryKey(m.Name), &m.Summary, "summary"); err != nil {
		return err
	}
	if m.List != nil {
		return r.putStreamOrSame(ctx, ManifestKey(m.Name), func(w io.Writer) error { return writeStreamed(w, m) }, "manifest")
	}
	return r.putOrSame(ctx, ManifestKey(m.Name), m, "manifest")
}

// putOrSame stores v under key if absent, or finds exactly v already there.
func (r *Repo) putOrSame(ctx context.Context, key string, v any, what string) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	err = r.putDoc(ctx, key, js)
	if !errors.Is(err, storage.ErrExist) {
		return err
	}
	same, cerr := r.storedEquals(ctx, key, js)
	return foundStored(err, same, cerr, what, key)
}

// foundStored decides a write of what under key that found an object there (err): done
// when the stored one is what the write holds (same), else err, saying why.
func foundStored(err error, same bool, cerr error, what, key string) error {
	switch {
	case cerr != nil:
		return fmt.Errorf("%w; and the stored %s could not be read to compare: %w", err, what, cerr)
	case !same:
		return fmt.Errorf("%w: another backup's %s is stored under %s; it was left untouched", err, what, key)
	}
	return nil
}

// ReadManifest reads one backup's manifest whole, its files in m.Files sorted by path,
// whatever its format. OpenManifest reads a large one without holding its files.
func (r *Repo) ReadManifest(ctx context.Context, name string) (*Manifest, error) {
	size, err := r.manifestSize(ctx, name)
	if err != nil {
		return nil, err
	}
	return r.readManifest(ctx, name, size)
}

func (r *Repo) manifestSize(ctx context.Context, name string) (int64, error) {
	info, err := r.st.Stat(ctx, ManifestKey(name))
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return 0, fmt.Errorf("%w %q (pgb backup-list shows the backups)", ErrNoBackup, name)
		}
		return 0, fmt.Errorf("read manifest of backup %s: %w", name, err)
	}
	return info.Size, nil
}

// Manifest reads the manifest of the backup that ListBackups described with s, whole
// (see ReadManifest), and checks that it says what s says: a summary that disagrees
// with its manifest marks a damaged backup.
func (r *Repo) Manifest(ctx context.Context, s *Summary) (*Manifest, error) {
	m, err := r.ReadManifest(ctx, s.Name)
	if err != nil {
		return nil, err
	}
	return m, sameSummary(m, s)
}

// OpenManifest is Manifest for a reader that goes through the files part by part
// (restore): the files of a format 2 manifest go to a FileList in a temporary file in
// dir ("": $TMPDIR), m.List, and memory does not grow with their number. A format 1
// manifest is read whole into m.Files. Every entry is checked as it is read. The
// caller closes m.
func (r *Repo) OpenManifest(ctx context.Context, s *Summary, dir string) (*Manifest, error) {
	size, err := r.manifestSize(ctx, s.Name)
	if err != nil {
		return nil, err
	}
	list, err := NewFileList(dir)
	if err != nil {
		return nil, err
	}
	m, err := r.readManifestFrom(ctx, s.Name, size, list)
	if err == nil {
		err = sameSummary(m, s)
	}
	if err != nil || m.List == nil {
		_ = list.Close() // unused, or dropped with the error
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

func sameSummary(m *Manifest, s *Summary) error {
	a, _ := json.Marshal(&m.Summary)
	b, _ := json.Marshal(s)
	if !bytes.Equal(a, b) {
		return fmt.Errorf("backup %s is %w: its summary and its manifest disagree", s.Name, ErrDamagedBackup)
	}
	return nil
}

// readManifest reads a manifest stored in storedSize bytes, whole.
func (r *Repo) readManifest(ctx context.Context, name string, storedSize int64) (*Manifest, error) {
	return r.readManifestFrom(ctx, name, storedSize, nil)
}

// readSummary reads a backup's summary.
func (r *Repo) readSummary(ctx context.Context, name string) (*Summary, error) {
	var s Summary
	if err := r.getJSON(ctx, SummaryKey(name), &s, smallDocLimit, "a summary is a few hundred bytes"); err != nil {
		return nil, backupDocError(name, "summary", err)
	}
	if err := checkSummary(name, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func backupDocError(name, what string, err error) error {
	switch {
	case errors.Is(err, storage.ErrNotExist):
		return fmt.Errorf("%w %q (pgb backup-list shows the backups)", ErrNoBackup, name)
	case errors.Is(err, ErrNewerFormat):
		return fmt.Errorf("backup %s: %w", name, err)
	case errors.Is(err, envelope.ErrCorrupt):
		return fmt.Errorf("%s of backup %s is %w: %w", what, name, ErrDamagedBackup, err)
	}
	return fmt.Errorf("read %s of backup %s: %w", what, name, err)
}

func checkSummary(name string, s *Summary) error {
	if s.Format > IncrementalFormat {
		return fmt.Errorf("backup %s is %w: it has format %d, this pgb understands up to %d: upgrade pgb", name, ErrNewerFormat, s.Format, IncrementalFormat)
	}
	if (s.Format == IncrementalFormat) != (s.Parent != "") {
		return fmt.Errorf("backup %s is %w: a manifest of format %d with parent %q", name, ErrDamagedBackup, s.Format, s.Parent)
	}
	if s.Parent != "" && (!validBackupName(s.Parent) || s.Parent == s.Name) {
		return fmt.Errorf("backup %s is %w: its parent %.80q is not a backup name", name, ErrDamagedBackup, s.Parent)
	}
	if s.Name != name {
		return fmt.Errorf("backup %s is %w: its manifest or summary describes backup %q", name, ErrDamagedBackup, s.Name)
	}
	return nil
}

// ListBackups returns every complete backup (those with a manifest), oldest first, and
// apart from them the backups whose manifest is damaged (see ErrDamagedBackup): one
// damaged backup must not make the others unusable. A storage error (unreachable,
// timeout, denied) is not damage: it fails the listing.
//
// It reads one small summary per backup (the manifest of a backup written by a pgb
// that wrote no summaries, or whose summary is damaged), never every file list.
func (r *Repo) ListBackups(ctx context.Context) ([]*Summary, []DamagedBackup, error) {
	type found struct {
		manifest   int64 // stored size; -1 when absent
		hasSummary bool
	}
	byName := map[string]*found{}
	var names []string
	err := r.eachBackupObject(ctx, func(name, doc string, o storage.ObjectInfo) {
		if doc != manifestName && doc != summaryName {
			return
		}
		f := byName[name]
		if f == nil {
			f = &found{manifest: -1}
			byName[name] = f
			names = append(names, name)
		}
		if doc == manifestName {
			f.manifest = o.Size
		} else {
			f.hasSummary = true
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list backups: %w", err)
	}
	var (
		out     []*Summary
		damaged []DamagedBackup
	)
	for _, n := range names {
		f := byName[n]
		if f.manifest < 0 {
			continue // no manifest: not a backup (one in progress, or one that failed)
		}
		if !validBackupName(n) {
			damaged = append(damaged, DamagedBackup{Name: strconv.Quote(n),
				Err: fmt.Errorf("backup %q is %w: pgb names backups with letters, digits, '-', '_' and '.' only", n, ErrDamagedBackup)})
			continue
		}
		s, err := r.summary(ctx, n, f.manifest, f.hasSummary)
		switch {
		case err == nil:
			out = append(out, s)
		case errors.Is(err, ErrNoBackup):
			// deleted since the listing: not there any more
		case errors.Is(err, ErrDamagedBackup), errors.Is(err, ErrNewerFormat):
			damaged = append(damaged, DamagedBackup{Name: n, Err: err})
		default:
			return nil, nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StopLSN < out[j].StopLSN })
	sort.Slice(damaged, func(i, j int) bool { return damaged[i].Name < damaged[j].Name })
	return out, damaged, nil
}

// eachBackupObject calls fn for every object under backups/<name>/, with the backup's
// name and the object's name within it, in key order.
func (r *Repo) eachBackupObject(ctx context.Context, fn func(name, doc string, o storage.ObjectInfo)) error {
	return r.st.List(ctx, backupsPrefix, func(o storage.ObjectInfo) error {
		if name, doc, ok := strings.Cut(strings.TrimPrefix(o.Key, backupsPrefix), "/"); ok {
			fn(name, doc, o)
		}
		return nil
	})
}

// validBackupName reports whether name is one pgb could have written (a time stamp,
// maybe with -2, -3…): anything else came from elsewhere and is never printed raw.
func validBackupName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '.' {
		return false
	}
	for _, c := range name {
		if (c < '0' || c > '9') && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// summary reads the summary of backup n, or its manifest when it has no usable
// summary: the manifest is what makes a backup exist, so a damaged summary alone does
// not make the backup unusable.
func (r *Repo) summary(ctx context.Context, n string, manifestSize int64, hasSummary bool) (*Summary, error) {
	if hasSummary {
		s, err := r.readSummary(ctx, n)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, ErrDamagedBackup) && !errors.Is(err, ErrNoBackup) {
			return nil, err
		}
		r.log.Warn("a backup's summary is unusable; reading its manifest instead", "backup", n, "error", err)
	}
	m, err := r.readManifest(ctx, n, manifestSize)
	if err != nil {
		return nil, err
	}
	return &m.Summary, nil
}

// BackupNameFree reports whether no object of a backup named name exists.
func (r *Repo) BackupNameFree(ctx context.Context, name string) (bool, error) {
	used := false
	err := r.st.List(ctx, BackupPrefix(name), func(storage.ObjectInfo) error {
		used = true
		return errStopList
	})
	if err != nil && !errors.Is(err, errStopList) {
		return false, fmt.Errorf("list backups: %w", err)
	}
	return !used, nil
}

var errStopList = errors.New("stop listing")

// ErrBackupComplete means a backup has a manifest: it is complete, and
// RemoveIncompleteBackup leaves it alone.
var ErrBackupComplete = errors.New("the backup has a manifest: it is complete")

// BackupRecorded reports whether m's manifest is stored with exactly m's content (a
// write that failed after it was stored).
func (r *Repo) BackupRecorded(ctx context.Context, m *Manifest) (bool, error) {
	if m.List != nil {
		same, err := r.storedEqualsStream(ctx, ManifestKey(m.Name), func(w io.Writer) error { return writeStreamed(w, m) })
		if errors.Is(err, storage.ErrNotExist) {
			return false, nil
		}
		return same, err
	}
	js, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	same, err := r.storedEquals(ctx, ManifestKey(m.Name), js)
	if errors.Is(err, storage.ErrNotExist) {
		return false, nil
	}
	return same, err
}

// RemoveIncompleteBackup removes the objects of a backup that did not complete (which
// no listing shows: it has no manifest). A backup with a manifest is complete: it is left
// alone, with an error wrapping ErrBackupComplete. It returns the keys it could not
// remove, and the error that stopped it, if any: the caller says what was left behind.
func (r *Repo) RemoveIncompleteBackup(ctx context.Context, name string) (left []string, err error) {
	var keys []string
	err = r.st.List(ctx, BackupPrefix(name), func(o storage.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil {
		return []string{BackupPrefix(name) + "*"}, fmt.Errorf("list the objects of backup %s: %w", name, err)
	}
	for _, k := range keys {
		if k == ManifestKey(name) {
			return keys, fmt.Errorf("backup %s: %w", name, ErrBackupComplete)
		}
	}
	for _, k := range keys {
		if derr := r.st.Delete(ctx, k); derr != nil && !errors.Is(derr, storage.ErrNotExist) {
			left = append(left, k)
			err = errors.Join(err, fmt.Errorf("remove %s: %w", k, derr))
		}
	}
	return left, err
}

// PartWriter streams one backup part into the repository: Write sealed bytes as they
// come, then Close, which returns once the part is durable. A part is stored whole or
// not at all.
type PartWriter struct {
	key   string
	pw    *io.PipeWriter
	buf   *bufio.Writer
	ew    *envelope.Writer
	extra int           // compressors taken from the repository's shared budget
	ret   func(int)     // gives them back
	ended chan struct{} // closed once the upload has returned, with upErr set
	upErr error
}

// Part compression and its memory. An lz4 part may be compressed on several cores (its
// 256 KiB blocks in parallel): backup workers each build one part and usually keep
// every core busy between them, but a backup's biggest file (a 1 GiB relation segment)
// ends up alone in the last part still open, and on one core the others would wait.
// Each compressor holds about 512 KiB of blocks in flight. A part gets one compressor
// of its own and up to defaultPartCompressors-1 more from a budget shared by every
// part open at once in the repository (extraCompressorBudget), so that memory does not
// grow with workers × cores: at most extraCompressorBudget × 512 KiB = 6 MiB above one
// compressor per worker, on a host of any size. zstd parts stay on one core each, with
// the long-stream window (compress.ForLongStreams: about 18 MiB per part being written).
const (
	defaultPartCompressors = 4
	extraCompressorBudget  = 12
)

// takeCompressors takes up to want-1 compressors from the shared budget without
// waiting, and returns how many it took.
func (r *Repo) takeCompressors(want int) int {
	n := 0
	for n < want-1 {
		select {
		case r.extraCompressors <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func (r *Repo) returnCompressors(n int) {
	for range n {
		<-r.extraCompressors
	}
}

// CreatePart starts the upload of part n (1-based) of backup. Exactly one of Close
// or Abort must follow.
func (r *Repo) CreatePart(ctx context.Context, backup string, n int) (*PartWriter, error) {
	if err := r.sealing(ctx, PartKey(backup, n)); err != nil {
		return nil, err
	}
	if err := r.registerRecipients(ctx); err != nil {
		return nil, err
	}
	codec := compress.ForLongStreams(r.codec)
	w := &PartWriter{key: PartKey(backup, n), ended: make(chan struct{}), ret: r.returnCompressors}
	if codec.ID() == compress.IDLZ4 && r.partCompressors > 1 {
		w.extra = r.takeCompressors(r.partCompressors)
		if w.extra > 0 {
			codec = compress.WithConcurrency(codec, 1+w.extra)
		}
	}
	pr, pw := io.Pipe()
	w.pw = pw
	w.buf = bufio.NewWriterSize(pw, 1<<20)
	ew, err := r.seal(w.buf, codec, w.key)
	if err != nil {
		r.returnCompressors(w.extra)
		return nil, err
	}
	w.ew = ew
	go func() {
		err := r.st.Put(ctx, w.key, pr, storage.PutOptions{IfAbsent: true, Size: -1})
		if err != nil {
			err = fmt.Errorf("upload %s: %w", w.key, err)
		}
		pr.CloseWithError(errOr(err, io.ErrClosedPipe))
		w.upErr = err
		close(w.ended)
	}()
	return w, nil
}

func errOr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

// errUploadEnded: the upload returned before the part was complete.
var errUploadEnded = errors.New("the upload ended before the part was complete")

// Write encodes plain bytes of the part. Once the upload has failed it fails at once,
// with the upload's error: with lz4 blocks compressed in parallel, a write to the
// pipe fails only inside the codec, and would show only at Close, after the worker
// had read and compressed the rest of the part for nothing.
func (w *PartWriter) Write(p []byte) (int, error) {
	select {
	case <-w.ended:
		return 0, errOr(w.upErr, errUploadEnded)
	default:
	}
	return w.ew.Write(p)
}

// Close finishes the part and waits until the repository has it. It returns the
// bytes stored.
func (w *PartWriter) Close() (int64, error) {
	defer w.release()
	err := w.ew.Close()
	if err == nil {
		err = w.buf.Flush()
	}
	w.pw.CloseWithError(err)
	<-w.ended
	if w.upErr != nil {
		return 0, w.upErr
	}
	return w.ew.Written(), err
}

// Abort breaks the upload so that nothing of the part is stored.
func (w *PartWriter) Abort(cause error) {
	defer w.release()
	if cause == nil {
		cause = errors.New("part aborted") // nil would end the stream cleanly: a truncated part
	}
	w.pw.CloseWithError(cause)
	<-w.ended
	// Ends the codec's goroutines (parallel lz4 blocks): its writes fail on the closed pipe.
	_ = w.ew.Close()
}

func (w *PartWriter) release() {
	w.ret(w.extra)
	w.extra = 0
}

// OpenPart opens part p of backup for verified reading. Reading fails as ErrCorrupt as
// soon as the part decodes to more than its manifest entry allows: its files' bytes and
// their tar headers (maxTarOverhead per file), so that a hostile part cannot fill the
// disk or run for hours before its trailer is reached.
func (r *Repo) OpenPart(ctx context.Context, backup string, p Part) (*Object, error) {
	o, err := r.open(ctx, PartKey(backup, p.N))
	if err != nil {
		return nil, err
	}
	if p.Size > 0 || p.Files > 0 { // a Part with neither (tests) sets no limit
		o.er.SetLimit(p.Size + int64(p.Files+1)*maxTarOverhead)
	}
	return o, nil
}

// maxTarOverhead bounds what tar adds per file of a part: a 512-byte header, a PAX
// header and its record for a long name (pgb's paths stay far below 2 KiB), and the
// padding of the data to 512 bytes; plus, once per part, the two zero blocks that end it.
const maxTarOverhead = 4096
