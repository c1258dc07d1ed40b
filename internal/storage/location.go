package storage

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// Location is a parsed repository URL.
type Location struct {
	Scheme string // "file", "s3" or "gs"
	Bucket string // s3/gs: the bucket
	Prefix string // s3/gs: key prefix inside the bucket, no leading or trailing "/"
	Path   string // file: absolute, cleaned directory path
}

// String gives the canonical URL of the location.
func (l Location) String() string {
	switch l.Scheme {
	case "file":
		return "file://" + l.Path
	default:
		if l.Prefix == "" {
			return l.Scheme + "://" + l.Bucket
		}
		return l.Scheme + "://" + l.Bucket + "/" + l.Prefix
	}
}

// ParseLocation parses a repository location: an absolute path, file:///abs/path,
// s3://bucket[/prefix] or gs://bucket[/prefix].
func ParseLocation(raw string) (Location, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Location{}, fmt.Errorf("no repository given: set --repo or PGB_REPO (an absolute path, file:///path, s3://bucket/prefix or gs://bucket/prefix)")
	}
	if strings.HasPrefix(raw, "/") {
		return Location{Scheme: "file", Path: filepath.Clean(raw)}, nil
	}
	if !strings.Contains(raw, "://") {
		return Location{}, fmt.Errorf("repository %q: want an absolute path, file:///path, s3://bucket/prefix or gs://bucket/prefix", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("repository %q is not a valid URL: %w", raw, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return Location{}, fmt.Errorf("repository %q: file URLs take an absolute path with no host (file:///var/lib/pgb)", raw)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return Location{}, fmt.Errorf("repository %q: file URLs need an absolute path (file:///var/lib/pgb)", raw)
		}
		return Location{Scheme: "file", Path: filepath.Clean(u.Path)}, nil
	case "s3", "gs":
		if u.Host == "" {
			return Location{}, fmt.Errorf("repository %q: no bucket; want %s://bucket/prefix", raw, u.Scheme)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return Location{}, fmt.Errorf("repository %q: want %s://bucket/prefix with no credentials, query or fragment (credentials go in the environment or config file)", redact(u), u.Scheme)
		}
		return Location{Scheme: u.Scheme, Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}, nil
	default:
		return Location{}, fmt.Errorf("repository %q: unknown scheme %q; want an absolute path, file://, s3:// or gs://", redact(u), u.Scheme)
	}
}

func redact(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}
