package s3

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

// Put stores r's bytes under key; see the package comment for how.
//
// Put reads the first part of r into memory (PartSize bytes, or more when opts.Size,
// a hint, says the object needs larger parts to fit into MaxParts): if r ends there,
// one PutObject sends them from memory, so the SDK can sign and retry it; otherwise a
// multipart upload streams r in parts of the sizes partPlan gives, keeping at most
// Concurrency parts in memory and in flight. The PutObject and each part are retried
// as Config.Retry says. Nothing is sent before r has
// either ended or filled the first part, and a failing r or a cancelled ctx leaves no
// object and no unfinished upload behind.
//
// With opts.IfAbsent the write carries "If-None-Match: *" and an existing object
// makes it fail with storage.ErrExist, as Config.Conditional describes.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	obj, err := s.objectKey(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: put %q: %w", key, err)
	}
	if opts.IfAbsent {
		switch s.cfg.Conditional {
		case ConditionalUnsupported:
			return fmt.Errorf("s3: put %q: this store does not enforce If-None-Match (conditional writes): %w", key, storage.ErrUnsupported)
		case ConditionalHeadCheck:
			// Racy by design; see ConditionalHeadCheck.
			if err := s.checkAbsent(ctx, key, obj); err != nil {
				return err
			}
		}
	}
	br := bufio.NewReader(r)
	plan := newPartPlan(s.cfg, opts.Size)
	first, last, err := readFirst(br, plan.base, opts.Size)
	if err != nil {
		return fmt.Errorf("s3: put %q: reading the data: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: put %q: %w", key, err)
	}
	if last {
		return s.putObject(ctx, key, obj, first, opts.IfAbsent)
	}
	if opts.IfAbsent && s.cfg.Conditional == ConditionalEnforced {
		// Fail early rather than after uploading everything. The condition on
		// CompleteMultipartUpload is the check that counts.
		if err := s.checkAbsent(ctx, key, obj); err != nil {
			return err
		}
	}
	// Its requests were retried under Config.Retry (sendPart, multipartRetries).
	err = s.putMultipart(ctx, key, obj, first, br, plan, opts.IfAbsent)
	if err != nil && ctx.Err() == nil && retry.Retryable(err) {
		err = retry.Exhausted(err)
	}
	return err
}

// putObject sends data in one PutObject request, with the attempts of Config.Retry.
//
// Like any retried IfAbsent write, a retry after a lost acknowledgement finds the
// object this call wrote and fails with storage.ErrExist (see retry.New).
func (s *Store) putObject(ctx context.Context, key, obj string, data []byte, ifAbsent bool) error {
	return s.cfg.Retry.Do(ctx, func(ctx context.Context) error {
		return s.sendGuarded(ctx, data, func(ctx context.Context, body io.ReadSeeker) error {
			return s.putObjectOnce(ctx, key, obj, body, int64(len(data)), ifAbsent)
		})
	})
}

// putObjectOnce is one PutObject request.
func (s *Store) putObjectOnce(ctx context.Context, key, obj string, body io.ReadSeeker, size int64, ifAbsent bool) error {
	sse, kms, class := s.sse()
	in := &s3.PutObjectInput{
		Bucket:               aws.String(s.cfg.Bucket),
		Key:                  aws.String(obj),
		Body:                 body,
		ContentLength:        aws.Int64(size),
		ServerSideEncryption: sse,
		SSEKMSKeyId:          kms,
		StorageClass:         class,
	}
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	_, err := s.client.PutObject(ctx, in)
	return s.translateError("put", key, err)
}

// checkAbsent fails with storage.ErrExist if the object exists. The HEAD is retried
// under Config.Retry: nothing above retries a Put (see retry.Config.PutRetriedBelow).
func (s *Store) checkAbsent(ctx context.Context, key, obj string) error {
	err := s.cfg.Retry.Do(ctx, func(ctx context.Context) error {
		_, err := s.head(ctx, obj)
		return s.translateError("put", key, err)
	})
	switch {
	case err == nil:
		return fmt.Errorf("s3: put %q: %w", key, storage.ErrExist)
	case errors.Is(err, storage.ErrNotExist):
		return nil
	default:
		return err
	}
}

// firstAlloc is the initial buffer for the first part when the size is unknown.
const firstAlloc = 64 << 10

// readFirst reads up to partSize bytes from br into a buffer that grows as needed (most
// objects are much smaller than a part), starting from the size hint. last reports
// that br has no more data.
func readFirst(br *bufio.Reader, partSize, hint int64) (data []byte, last bool, err error) {
	size := min(int64(firstAlloc), partSize)
	if hint >= 0 {
		size = min(hint, partSize-1) + 1 // +1: room to see the end without growing
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == partSize {
				break
			}
			grown := make([]byte, len(buf), min(2*int64(cap(buf))+1, partSize))
			copy(grown, buf)
			buf = grown
		}
		n, err := br.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	if _, err := br.Peek(1); err == io.EOF {
		return buf, true, nil
	} else if err != nil {
		return nil, false, err
	}
	return buf, false, nil
}

// readPart fills buf from br. last reports that br has no more data after the n
// bytes read; a short part is always the last.
func readPart(br *bufio.Reader, buf []byte) (n int, last bool, err error) {
	n, err = io.ReadFull(br, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return n, true, nil
	case err != nil:
		return n, false, err
	}
	if _, err := br.Peek(1); err == io.EOF {
		return n, true, nil
	} else if err != nil {
		return n, false, err
	}
	return n, false, nil
}
