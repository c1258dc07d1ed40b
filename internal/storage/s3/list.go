package s3

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgb-project/pgb/internal/storage"
)

// List calls fn for every object under prefix, in the lexical order S3 lists keys in,
// fetching pages of up to 1000 keys with ListObjectsV2. ctx is checked before each
// page and each call of fn.
//
// Only keys inside the store's Prefix are seen (the listing is of Prefix + "/" +
// prefix). Keys that storage.ValidKey rejects, such as the "dir/" markers some
// consoles create, are skipped: no Store method could use them.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidPrefix(prefix); err != nil {
		return err
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.cfg.Bucket),
		Prefix: aws.String(s.base + prefix),
	})
	for p.HasMorePages() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("s3: list %q: %w", prefix, err)
		}
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.translateError("list", prefix, err)
		}
		for _, o := range page.Contents {
			key, ok := strings.CutPrefix(aws.ToString(o.Key), s.base)
			if !ok || !strings.HasPrefix(key, prefix) || storage.ValidKey(key) != nil {
				continue
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("s3: list %q: %w", prefix, err)
			}
			if err := fn(storage.ObjectInfo{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete removes the object. S3 answers a DELETE of a missing key with success, so a
// HeadObject comes first to report storage.ErrNotExist. Between the two requests
// another client may delete the object too; then both Deletes succeed.
func (s *Store) Delete(ctx context.Context, key string) error {
	obj, err := s.objectKey(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: delete %q: %w", key, err)
	}
	if _, err := s.head(ctx, obj); err != nil {
		return s.translateError("delete", key, err)
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(obj)})
	return s.translateError("delete", key, err)
}
