package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/pgb-project/pgb/internal/storage"
)

// storedEquals reports whether the object stored under key decodes to exactly want.
// It reads at most one byte more than want. An encrypted object is compared by its
// keyed tag when it can be (sameByTag).
func (r *Repo) storedEquals(ctx context.Context, key string, want []byte) (bool, error) {
	same, decided, err := r.sameByTag(ctx, key, func(w io.Writer) error { _, err := w.Write(want); return err })
	if decided || err != nil {
		return same, err
	}
	o, err := r.open(ctx, key)
	if err != nil {
		return false, err
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	got, err := io.ReadAll(io.LimitReader(o, int64(len(want))+1))
	if err != nil {
		return false, err
	}
	if !bytes.Equal(got, want) {
		return false, nil
	}
	// The size and checksum are checked only at the end.
	if _, err := io.Copy(io.Discard, o); err != nil {
		return false, err
	}
	return true, nil
}

// sameByTag compares the object stored under key with what write writes by the keyed
// tag of its trailer (one ranged read), when this repository encrypts key and the
// stored object is encrypted under the same MAC key: a writer that holds no identity
// can still recognise its own earlier upload. decided is false when the tags cannot
// be compared (not encrypted, another MAC key): only decoding the object settles it.
func (r *Repo) sameByTag(ctx context.Context, key string, write func(io.Writer) error) (same, decided bool, err error) {
	if !Encrypts(key) || !r.Encrypting() || r.CanDecrypt() {
		return false, false, nil // a reader that can decrypt compares the bytes
	}
	if err := r.sealing(ctx, key); err != nil {
		return false, false, err
	}
	r.keysMu.Lock()
	enc := r.encrypt
	r.keysMu.Unlock()
	if enc == nil {
		return false, false, nil
	}
	stored, err := r.readTrailer(ctx, key)
	if err != nil {
		return false, false, err
	}
	id, mac := enc.MACKey()
	if !stored.Keyed() || stored.KeyID != id {
		return false, false, nil
	}
	t := newTagWriter()
	if err := write(t); err != nil {
		return false, false, err
	}
	return stored.Same(t.tag(mac, id, enc.RecipientSet())), true, nil
}

// putJSON stores v as a sealed, zstd-compressed JSON document, only if absent.
func (r *Repo) putJSON(ctx context.Context, key string, v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.putDoc(ctx, key, js)
}

// putDoc stores js as a sealed, zstd-compressed document, only if absent.
func (r *Repo) putDoc(ctx context.Context, key string, js []byte) error {
	if err := r.sealing(ctx, key); err != nil {
		return err
	}
	var buf bytes.Buffer
	w, err := r.seal(&buf, r.docCodec, key)
	if err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return r.st.Put(ctx, key, bytes.NewReader(buf.Bytes()), storage.PutOptions{IfAbsent: true, Size: int64(buf.Len())})
}

// ErrTooLarge means a repository document decodes to more than pgb allows for it: it
// is damaged or hostile (a small compressed object can decode to gigabytes), and
// reading on would exhaust memory.
var ErrTooLarge = errors.New("larger than pgb allows")

// Limits on what a repository document may decode to. Reading stops at the limit, so
// memory stays bounded whatever an object claims.
const (
	// A manifest may decode to manifestRatio times its stored size, at least
	// manifestFloor and never more than manifestCap. Each file's entry carries its
	// CRC-32C, which does not compress: measured, 100,000 files of data compress
	// about 6:1 and 100,000 empty files (identical CRC and mtime) 64:1, while a
	// decompression bomb needs thousands to one. manifestCap holds some four million
	// files at 256 bytes of JSON each.
	manifestRatio = 128
	manifestFloor = 64 << 20
	manifestCap   = 1 << 30
	// A restore point, the lock and pgb.json are a few hundred bytes.
	smallDocLimit = 1 << 20
)

// manifestLimit is how far a manifest stored in storedSize bytes may decode.
func manifestLimit(storedSize int64) int64 {
	if storedSize < 0 || storedSize > manifestCap/manifestRatio {
		return manifestCap
	}
	return max(manifestFloor, storedSize*manifestRatio)
}

// readLimited reads r to its end, failing with ErrTooLarge past limit bytes.
func readLimited(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is %w: it decodes to more than %s", what, ErrTooLarge, sizeText(limit))
	}
	return b, nil
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// getJSON reads what putJSON wrote, decoding at most limit bytes of JSON; more is
// ErrTooLarge, which also wraps ErrCorrupt (the object is damaged).
func (r *Repo) getJSON(ctx context.Context, key string, v any, limit int64, why string) error {
	o, err := r.open(ctx, key)
	if err != nil {
		return err
	}
	defer func() { _ = o.Close() }() // read-only: the envelope check decides
	b, err := readLimited(o, limit, key)
	if errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("%w (%s): %w", err, why, ErrCorrupt)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w: %w", key, ErrCorrupt, err)
	}
	return nil
}
