package s3

import (
	"bufio"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// abortTimeout bounds AbortMultipartUpload, which runs even when the caller's context
// is already cancelled.
const abortTimeout = time.Minute

// growthSteps is how many times partPlan doubles the part size within MaxParts parts.
const growthSteps = 10

// partPlan says how large each part of one multipart upload is, so that no upload
// needs more than Config.MaxParts parts: the first flat parts have the base size, and
// after them the size doubles every step parts, up to MaxPartSize.
//
// For a stream of unknown size, flat is a tenth of MaxParts and the size then
// doubles growthSteps times over the rest (every 900 parts on AWS): with 10,000 parts
// of at least 5 MiB that passes S3's 5 TiB object limit, while an object of up to
// MaxParts/10 × PartSize (16 GiB with the defaults) keeps the configured size. For a known size, base is large enough to fit it into MaxParts
// parts, and growth (in the rest of the parts) only matters if the size was wrong.
type partPlan struct {
	base       int64
	flat, step int
	max        int // MaxParts
}

// newPartPlan plans the parts of an upload of size bytes (-1: unknown).
func newPartPlan(cfg Config, size int64) partPlan {
	p := partPlan{base: cfg.PartSize, max: cfg.MaxParts, flat: max(1, cfg.MaxParts/10)}
	if size >= 0 {
		const mib = 1 << 20
		fit := (size + int64(cfg.MaxParts) - 1) / int64(cfg.MaxParts)
		p.base = min(MaxPartSize, max(p.base, (fit+mib-1)/mib*mib))
		p.flat = int(min(int64(cfg.MaxParts), max(1, (size+p.base-1)/p.base)))
	}
	p.step = max(1, (cfg.MaxParts-p.flat)/growthSteps)
	return p
}

// size returns the size of part num (1-based).
func (p partPlan) size(num int32) int64 {
	if int(num) <= p.flat {
		return p.base
	}
	doublings := (int(num)-p.flat-1)/p.step + 1
	if doublings >= 30 || p.base<<doublings > MaxPartSize {
		return MaxPartSize
	}
	return p.base << doublings
}

// putMultipart uploads first (a full part of plan's first size) and the rest of br as
// one multipart upload, in parts of the sizes plan gives; with br nil, first is the
// only part. With ifAbsent the completion carries "If-None-Match: *". On any failure,
// cancellation included, the upload is aborted.
func (s *Store) putMultipart(ctx context.Context, key, obj string, first []byte, br *bufio.Reader, plan partPlan, ifAbsent bool) (err error) {
	sse, kms, class := s.sse()
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:               aws.String(s.cfg.Bucket),
		Key:                  aws.String(obj),
		ServerSideEncryption: sse,
		SSEKMSKeyId:          kms,
		StorageClass:         class,
		ChecksumAlgorithm:    s.checksumAlgorithm(),
	})
	if err != nil {
		return s.translateError("put", key, err)
	}
	id := aws.ToString(created.UploadId)
	defer func() {
		if err != nil {
			err = s.abort(ctx, key, obj, id, err)
		}
	}()

	parts, err := s.uploadParts(ctx, key, obj, id, first, br, plan)
	if err != nil {
		return err
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.cfg.Bucket),
		Key:             aws.String(obj),
		UploadId:        aws.String(id),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	_, err = s.client.CompleteMultipartUpload(ctx, in)
	if err = s.translateError("put", key, err); err != nil && ctx.Err() == nil && s.completedAfterAll(ctx, obj, parts) {
		// An attempt was stored and its answer lost: the retry found the upload gone
		// (NoSuchUpload) or, with If-None-Match, the object this call made (412).
		return nil
	}
	return err
}

// completedAfterAll reports whether the object under obj is the one these parts make:
// its ETag is the multipart ETag of exactly these parts (the MD5 of their MD5s, then
// "-" and their number).
func (s *Store) completedAfterAll(ctx context.Context, obj string, parts []types.CompletedPart) bool {
	want, ok := multipartETag(parts)
	if !ok {
		return false
	}
	var got string
	err := s.cfg.Retry.Do(ctx, func(ctx context.Context) error {
		h, err := s.head(ctx, obj)
		if err == nil {
			got = aws.ToString(h.ETag)
		}
		return s.translateError("head", obj, err)
	})
	return err == nil && strings.Trim(got, `"`) == want
}

// multipartETag is the ETag S3 gives the object a multipart upload of parts completes.
func multipartETag(parts []types.CompletedPart) (string, bool) {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(strings.Trim(aws.ToString(p.ETag), `"`))
		if err != nil || len(b) != md5.Size {
			return "", false
		}
		h.Write(b)
	}
	return fmt.Sprintf("%x-%d", h.Sum(nil), len(parts)), true
}

// uploadParts sends first and then br's data (none if br is nil) in parts of the sizes
// plan gives, at most Concurrency in flight and in memory. It returns the completed
// parts in order, or the first failure: of an upload, of reading br, or ctx's error.
func (s *Store) uploadParts(ctx context.Context, key, obj, id string, first []byte, br *bufio.Reader, plan partPlan) ([]types.CompletedPart, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		parts []types.CompletedPart
	)
	free := make(chan []byte, s.cfg.Concurrency) // buffers of finished parts
	allocated := 1
	data, last := first, br == nil
	for num := int32(1); ; num++ {
		if int(num) > plan.max {
			cancel(fmt.Errorf("s3: put %q: the data needs more than %d parts (--s3-max-parts) growing from %d bytes: raise --s3-part-size", key, plan.max, plan.base))
			break
		}
		body := data
		wg.Go(func() {
			part, err := s.sendPart(ctx, key, obj, id, num, body)
			if err != nil {
				cancel(err)
				return
			}
			mu.Lock()
			parts = append(parts, part)
			mu.Unlock()
			free <- body[:cap(body)]
		})
		if last {
			break
		}
		size := plan.size(num + 1)
		var buf []byte
		if allocated < s.cfg.Concurrency {
			buf = make([]byte, size)
			allocated++
		} else {
			select {
			case buf = <-free:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		if int64(cap(buf)) < size {
			buf = make([]byte, size) // the part size grew: the old buffer goes
		}
		n, l, err := readPart(br, buf[:size])
		if err != nil {
			cancel(fmt.Errorf("s3: put %q: reading the data: %w", key, err))
			break
		}
		if ctx.Err() != nil {
			break
		}
		data, last = buf[:n], l
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("s3: put %q: %w", key, err)
		}
		return nil, err
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int {
		return cmp.Compare(aws.ToInt32(a.PartNumber), aws.ToInt32(b.PartNumber))
	})
	return parts, nil
}

// sendPart sends one part from memory with the attempts of Config.Retry, the one
// policy (each attempt is one request: the SDK does not retry UploadPart, see
// multipartOps). A transient fault thus costs one part again, not the whole upload.
func (s *Store) sendPart(ctx context.Context, key, obj, id string, num int32, data []byte) (types.CompletedPart, error) {
	var part types.CompletedPart
	err := s.cfg.Retry.Do(ctx, func(ctx context.Context) error {
		return s.sendGuarded(ctx, data, func(ctx context.Context, body io.ReadSeeker) error {
			var err error
			part, err = s.uploadPart(ctx, key, obj, id, num, body, int64(len(data)))
			return err
		})
	})
	return part, err
}

// uploadPart sends one part from memory, so that the SDK can retry it.
func (s *Store) uploadPart(ctx context.Context, key, obj, id string, num int32, body io.ReadSeeker, size int64) (types.CompletedPart, error) {
	out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:            aws.String(s.cfg.Bucket),
		Key:               aws.String(obj),
		UploadId:          aws.String(id),
		PartNumber:        aws.Int32(num),
		Body:              body,
		ContentLength:     aws.Int64(size),
		ChecksumAlgorithm: s.checksumAlgorithm(),
	})
	if err != nil {
		return types.CompletedPart{}, s.translateError("put", key, err)
	}
	// The checksums the SDK computed must be repeated in the completion request of an
	// upload that uses them.
	return types.CompletedPart{
		PartNumber:        aws.Int32(num),
		ETag:              out.ETag,
		ChecksumCRC32:     out.ChecksumCRC32,
		ChecksumCRC32C:    out.ChecksumCRC32C,
		ChecksumCRC64NVME: out.ChecksumCRC64NVME,
		ChecksumSHA1:      out.ChecksumSHA1,
		ChecksumSHA256:    out.ChecksumSHA256,
	}, nil
}

// abort aborts the upload after cause ended it, under a context of its own so that
// a cancelled ctx still cleans up. It returns cause, noting when the abort failed.
func (s *Store) abort(ctx context.Context, key, obj, id string, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket:   aws.String(s.cfg.Bucket),
		Key:      aws.String(obj),
		UploadId: aws.String(id),
	})
	var noUpload *types.NoSuchUpload
	if err == nil || errors.As(err, &noUpload) {
		return cause
	}
	return fmt.Errorf("%w (and aborting multipart upload %s failed, so its parts stay stored until a bucket lifecycle rule for incomplete uploads removes them: %s)",
		cause, id, s.translateError("abort", key, err).Error()) // only cause is in the chain
}
