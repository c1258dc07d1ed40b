package s3

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/pgb-project/pgb/internal/storage"
)

// maxDeleteObjects is the most keys S3 takes in one DeleteObjects request.
const maxDeleteObjects = 1000

// MaxBatch is the most keys one DeleteBatch takes: S3's limit for DeleteObjects.
func (s *Store) MaxBatch() int { return maxDeleteObjects }

// DeleteBatch removes up to 1000 objects in one DeleteObjects request (see
// storage.BatchDeleter). The request is in quiet mode: S3 answers only the keys it
// could not delete, each with a code; NoSuchKey counts as deleted, any other fails
// the batch with a *storage.BatchError naming every such key, translated as a single
// request's error would be (AccessDenied is permanent; InternalError and SlowDown can
// be retried). The SDK adds the checksum of the request body that S3 requires for
// DeleteObjects (CRC32; servers that want Content-MD5 are set to s3-checksum:
// when-required, for which the SDK still sends one that S3 accepts).
func (s *Store) DeleteBatch(ctx context.Context, keys []string) error {
	if len(keys) > maxDeleteObjects {
		return fmt.Errorf("s3: delete objects: %d keys, more than %d in one request", len(keys), maxDeleteObjects)
	}
	if len(keys) == 0 {
		return nil
	}
	objs := make([]types.ObjectIdentifier, 0, len(keys))
	byObject := make(map[string]string, len(keys))
	for _, k := range keys {
		obj, err := s.objectKey(k)
		if err != nil {
			return err
		}
		objs = append(objs, types.ObjectIdentifier{Key: aws.String(obj)})
		byObject[obj] = k
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: delete objects: %w", err)
	}
	out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
		Bucket: aws.String(s.cfg.Bucket),
		Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
	})
	if err != nil {
		name := keys[0]
		if len(keys) > 1 {
			name = fmt.Sprintf("%s and %d more", keys[0], len(keys)-1)
		}
		return s.translateError("delete objects", name, err)
	}
	failed := map[string]error{}
	for _, e := range out.Errors {
		obj := aws.ToString(e.Key)
		k, ok := byObject[obj]
		if !ok {
			k = obj // a key the request did not name: report it as the server gave it
		}
		kerr := s.translateError("delete", k, &smithy.GenericAPIError{Code: aws.ToString(e.Code), Message: aws.ToString(e.Message)})
		if errors.Is(kerr, storage.ErrNotExist) {
			continue
		}
		failed[k] = kerr
	}
	return storage.NewBatchError("s3: delete objects", keys, failed)
}
