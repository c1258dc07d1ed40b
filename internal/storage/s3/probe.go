package s3

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgb-project/pgb/internal/storage"
)

// ProbeConditionalWrites tells whether the server enforces "If-None-Match: *" on
// both ways of writing an object: it creates a small object under a random key
// ("check/cond-<random>" under the store's prefix), then tries to write it again with
// that condition by PutObject and by a one-part multipart upload, reports whether
// both were refused, and deletes the object. The probe sends the condition whatever
// Config.Conditional says. A server that ignores it needs ConditionalHeadCheck or
// ConditionalUnsupported.
func (s *Store) ProbeConditionalWrites(ctx context.Context) (enforced bool, err error) {
	key := "check/cond-" + rand.Text()
	obj, err := s.objectKey(key)
	if err != nil {
		return false, err
	}
	if err := s.putObject(ctx, key, obj, []byte("first"), true); err != nil {
		return false, fmt.Errorf("s3: probing conditional writes: %w", err)
	}
	defer func() {
		_, derr := s.client.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(obj)})
		if derr != nil && err == nil {
			err = fmt.Errorf("s3: probing conditional writes: removing the probe object: %w", s.translateError("delete", key, derr))
		}
	}()
	for _, write := range []func() error{
		func() error { return s.putObject(ctx, key, obj, []byte("second"), true) },
		func() error { return s.putMultipart(ctx, key, obj, []byte("third"), nil, newPartPlan(s.cfg, 5), true) },
	} {
		switch err := write(); {
		case err == nil:
			return false, nil
		case !errors.Is(err, storage.ErrExist):
			return false, fmt.Errorf("s3: probing conditional writes: %w", err)
		}
	}
	return true, nil
}
