package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/pgb-project/pgb/internal/storage"
)

// Get streams the object from off, length bytes or (length < 0) to the end, with a
// ranged GetObject. The reader fails with io.ErrUnexpectedEOF when the body ends
// before the Content-Length the server announced. A whole-object read is checked
// against the object's checksum when the server keeps one.
//
// S3 answers a range that starts at or past the end with 416; a HeadObject then
// tells an empty read at the very end (off == size) from storage.ErrInvalidRange.
// A zero length is answered by a HeadObject alone.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	obj, err := s.objectKey(key)
	if err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("s3: get %q: offset %d: %w", key, off, storage.ErrInvalidRange)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3: get %q: %w", key, err)
	}
	if length == 0 {
		return s.emptyAt(ctx, key, obj, off)
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(obj)}
	if off > 0 || length > 0 {
		in.Range = aws.String(byteRange(off, length))
	} else if s.cfg.Checksum == ChecksumWhenSupported {
		in.ChecksumMode = types.ChecksumModeEnabled // see New
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		err = s.translateError("get", key, err)
		if errors.Is(err, storage.ErrInvalidRange) {
			return s.emptyAt(ctx, key, obj, off)
		}
		return nil, err
	}
	if in.Range != nil && out.ContentRange == nil {
		_ = out.Body.Close() // never read: the ignored range is the error
		return nil, fmt.Errorf("s3: get %q: the server ignored the request for %s", key, *in.Range)
	}
	want := int64(-1)
	if out.ContentLength != nil {
		want = *out.ContentLength
	}
	return &body{ctx: ctx, rc: out.Body, key: key, want: want}, nil
}

// byteRange is the HTTP Range header for off and length (length < 0: to the end).
func byteRange(off, length int64) string {
	if length < 0 {
		return fmt.Sprintf("bytes=%d-", off)
	}
	return fmt.Sprintf("bytes=%d-%d", off, off+length-1)
}

// emptyAt returns an empty reader if off is within or at the end of the object, and
// storage.ErrInvalidRange if it lies past the end.
func (s *Store) emptyAt(ctx context.Context, key, obj string, off int64) (io.ReadCloser, error) {
	out, err := s.head(ctx, obj)
	if err != nil {
		return nil, s.translateError("get", key, err)
	}
	if size := aws.ToInt64(out.ContentLength); off > size {
		return nil, fmt.Errorf("s3: get %q: offset %d is past the end of the %d-byte object: %w", key, off, size, storage.ErrInvalidRange)
	}
	return http.NoBody, nil
}

// Stat describes the object with a HeadObject request.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	obj, err := s.objectKey(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("s3: stat %q: %w", key, err)
	}
	out, err := s.head(ctx, obj)
	if err != nil {
		return storage.ObjectInfo{}, s.translateError("stat", key, err)
	}
	return storage.ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// head sends HeadObject for the object key obj; the caller translates errors.
func (s *Store) head(ctx context.Context, obj string) (*s3.HeadObjectOutput, error) {
	return s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(obj)})
}

// body is a GetObject body that counts what it yields against the Content-Length,
// so that a connection cut short is an error and never a clean io.EOF, and that stops
// with ctx's error once ctx is done (data already buffered included).
type body struct {
	ctx  context.Context
	rc   io.ReadCloser
	key  string
	want int64 // -1: not announced
	got  int64
}

func (b *body) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, fmt.Errorf("s3: get %q: reading the body after %d bytes: %w", b.key, b.got, err)
	}
	n, err := b.rc.Read(p)
	b.got += int64(n)
	switch {
	case b.want >= 0 && b.got > b.want:
		return n, fmt.Errorf("s3: get %q: the body is longer than the announced %d bytes", b.key, b.want)
	case err == io.EOF && b.want >= 0 && b.got < b.want:
		return n, fmt.Errorf("s3: get %q: the body ended after %d of %d bytes: %w", b.key, b.got, b.want, io.ErrUnexpectedEOF)
	case err != nil && err != io.EOF:
		return n, fmt.Errorf("s3: get %q: reading the body after %d bytes: %w", b.key, b.got, err)
	}
	return n, err
}

func (b *body) Close() error { return b.rc.Close() }
