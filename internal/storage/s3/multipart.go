package s3

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// maxParts is S3's limit on the parts of one upload.
const maxParts = 10000

// abortTimeout bounds AbortMultipartUpload, which runs even when the caller's context
// is already cancelled.
const abortTimeout = time.Minute

// putMultipart uploads first (a full part) and the rest of br as one multipart
// upload; with br nil, first is the only part. With ifAbsent the completion carries
// "If-None-Match: *". On any failure, cancellation included, the upload is aborted.
func (s *Store) putMultipart(ctx context.Context, key, obj string, first []byte, br *bufio.Reader, ifAbsent bool) (err error) {
	sse, kms, class := s.sse()
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:               aws.String(s.cfg.Bucket),
		Key:                  aws.String(obj),
		ServerSideEncryption: sse,
		SSEKMSKeyId:          kms,
		StorageClass:         class,
		ChecksumAlgorithm:    types.ChecksumAlgorithmCrc32,
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

	parts, err := s.uploadParts(ctx, key, obj, id, first, br)
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
	return s.translateError("put", key, err)
}

// uploadParts sends first and then br's data (none if br is nil) in parts, at most
// Concurrency in flight and in memory. It returns the completed parts in order, or
// the first failure: of an upload, of reading br, or ctx's error.
func (s *Store) uploadParts(ctx context.Context, key, obj, id string, first []byte, br *bufio.Reader) ([]types.CompletedPart, error) {
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
		if num > maxParts {
			cancel(fmt.Errorf("s3: put %q: more than %d parts of %d bytes: raise --s3-part-size", key, maxParts, s.cfg.PartSize))
			break
		}
		body := data
		wg.Go(func() {
			part, err := s.uploadPart(ctx, key, obj, id, num, body)
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
		var buf []byte
		if allocated < s.cfg.Concurrency {
			buf = make([]byte, s.cfg.PartSize)
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
		n, l, err := readPart(br, buf)
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

// uploadPart sends one part from memory, so that the SDK can retry it.
func (s *Store) uploadPart(ctx context.Context, key, obj, id string, num int32, data []byte) (types.CompletedPart, error) {
	out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:            aws.String(s.cfg.Bucket),
		Key:               aws.String(obj),
		UploadId:          aws.String(id),
		PartNumber:        aws.Int32(num),
		Body:              bytes.NewReader(data),
		ContentLength:     aws.Int64(int64(len(data))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
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
