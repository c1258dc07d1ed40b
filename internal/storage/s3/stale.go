package s3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/pgb-project/pgb/internal/storage"
)

// RemoveStaleTemps finds, below the key prefix, the multipart uploads that killed
// writers left incomplete and that were initiated before cutoff, and with remove aborts
// them. It returns how many uploads it found and the bytes of their stored parts.
//
// A writer aborts its own failed upload (Put), but a writer that is killed, or whose
// abort fails, leaves the upload behind: S3 keeps its parts, invisible to listings of
// objects and billed, until it is aborted or a bucket lifecycle rule for incomplete
// uploads removes it. This is the multipart counterpart of the filesystem store's
// temp files. The caller makes sure no writer is live below prefix (pgb delete
// --garbage holds the backup lock, under which alone backups/ is written); cutoff
// spares uploads younger than it besides.
func (s *Store) RemoveStaleTemps(ctx context.Context, prefix string, cutoff time.Time, remove bool) (uploads int, bytes int64, err error) {
	if err := storage.ValidPrefix(prefix); err != nil {
		return 0, 0, err
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(s.base + prefix)}
	for pages := 0; ; pages++ {
		if err := ctx.Err(); err != nil {
			return uploads, bytes, fmt.Errorf("s3: incomplete uploads below %q: %w", prefix, err)
		}
		if pages == maxListPages {
			return uploads, bytes, fmt.Errorf("s3: incomplete uploads below %q: more than %d pages of them", prefix, maxListPages)
		}
		page, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return uploads, bytes, s.sweepError("list incomplete uploads", prefix, err)
		}
		for _, u := range page.Uploads {
			obj, id := aws.ToString(u.Key), aws.ToString(u.UploadId)
			key, ok := strings.CutPrefix(obj, s.base)
			if !ok || !strings.HasPrefix(key, prefix) || id == "" || u.Initiated == nil || !u.Initiated.Before(cutoff) {
				continue // not ours, or young
			}
			n, err := s.uploadedBytes(ctx, key, obj, id)
			if err != nil {
				return uploads, bytes, err
			}
			if remove {
				if err := s.abortStale(ctx, key, obj, id); err != nil {
					return uploads, bytes, err
				}
			}
			uploads++
			bytes += n
		}
		if !aws.ToBool(page.IsTruncated) {
			return uploads, bytes, nil
		}
		nk, nu := aws.ToString(page.NextKeyMarker), aws.ToString(page.NextUploadIdMarker)
		if nk == "" && nu == "" || nk == aws.ToString(in.KeyMarker) && nu == aws.ToString(in.UploadIdMarker) {
			return uploads, bytes, fmt.Errorf("s3: incomplete uploads below %q: the listing is truncated but its next page does not move on (%q, %q)", prefix, nk, nu)
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

// uploadedBytes is the size of the parts an incomplete upload holds; 0 when it is
// gone meanwhile.
func (s *Store) uploadedBytes(ctx context.Context, key, obj, id string) (int64, error) {
	var n int64
	p := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(obj), UploadId: aws.String(id)},
		func(o *s3.ListPartsPaginatorOptions) { o.StopOnDuplicateToken = true })
	for pages := 0; p.HasMorePages(); pages++ {
		if pages == maxListPages {
			return 0, fmt.Errorf("s3: the parts of an incomplete upload of %q: more than %d pages of them", key, maxListPages)
		}
		page, err := p.NextPage(ctx)
		var noUpload *types.NoSuchUpload
		if errors.As(err, &noUpload) {
			return 0, nil
		}
		if err != nil {
			return 0, s.sweepError("list the parts of an incomplete upload of", key, err)
		}
		for _, part := range page.Parts {
			n += aws.ToInt64(part.Size)
		}
	}
	return n, nil
}

// abortStale aborts an incomplete upload found by RemoveStaleTemps; one already gone
// is not an error.
func (s *Store) abortStale(ctx context.Context, key, obj, id string) error {
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.cfg.Bucket), Key: aws.String(obj), UploadId: aws.String(id),
	})
	var noUpload *types.NoSuchUpload
	if err == nil || errors.As(err, &noUpload) {
		return nil
	}
	return s.sweepError("abort an incomplete upload of", key, err)
}

// maxListPages bounds the pages of one listing the sweep reads (1000 entries each):
// a server that never stops paging must not keep it going for ever.
const maxListPages = 10000

// sweepError is translateError, marking as storage.ErrUnsupported the answers of a
// store, or of credentials, that do not allow the sweep (no permission to list or
// abort multipart uploads, or a server without those calls): the caller can then go on
// without it.
func (s *Store) sweepError(op, key string, err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "AccessDenied", "NotImplemented", "MethodNotAllowed", "InvalidRequest":
			return fmt.Errorf("%w: %w", storage.ErrUnsupported, s.translateError(op, key, err))
		}
	}
	return s.translateError(op, key, err)
}
