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

// ProbeChecksums tells whether the store accepts the SDK's default request checksums
// (ChecksumWhenSupported), whatever Config.Checksum says: it writes a small object
// under a random key ("check/checksum-<random>" under the store's prefix) by
// PutObject and by a one-part multipart upload with them, and deletes it. If that
// fails and the same writes without them (ChecksumWhenRequired) succeed, supported
// is false and err nil: the store needs s3-checksum when-required. If both fail, err
// is the first failure.
func (s *Store) ProbeChecksums(ctx context.Context) (supported bool, err error) {
	errDefault := s.withChecksum(ChecksumWhenSupported).probeWrites(ctx)
	if errDefault == nil {
		return true, nil
	}
	if err := s.withChecksum(ChecksumWhenRequired).probeWrites(ctx); err != nil {
		return false, fmt.Errorf("s3: probing request checksums: %w", errDefault)
	}
	return false, nil
}

// withChecksum returns a copy of s, sharing its connections, that sends checksums as
// mode says.
func (s *Store) withChecksum(mode ChecksumMode) *Store {
	c := *s
	c.cfg.Checksum = mode
	calc := aws.RequestChecksumCalculationWhenSupported
	if mode == ChecksumWhenRequired {
		calc = aws.RequestChecksumCalculationWhenRequired
	}
	c.client = s3.New(s.client.Options(), func(o *s3.Options) { o.RequestChecksumCalculation = calc })
	return &c
}

// probeWrites writes a small object by PutObject and then by a one-part multipart
// upload, and deletes it.
func (s *Store) probeWrites(ctx context.Context) (err error) {
	key := "check/checksum-" + rand.Text()
	obj, err := s.objectKey(key)
	if err != nil {
		return err
	}
	defer func() {
		_, derr := s.client.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(obj)})
		if derr != nil && err == nil {
			err = fmt.Errorf("removing the probe object: %w", s.translateError("delete", key, derr))
		}
	}()
	if err := s.putObject(ctx, key, obj, []byte("checksums"), false); err != nil {
		return err
	}
	return s.putMultipart(ctx, key, obj, []byte("checksums, multipart"), nil, newPartPlan(s.cfg, 20), false)
}
