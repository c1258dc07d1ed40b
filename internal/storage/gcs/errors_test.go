package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	gs "cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/retry"
)

func TestTranslateError(t *testing.T) {
	t.Setenv(emulatorEnv, "")
	s := &Store{cfg: Config{Bucket: "bkt", Endpoint: "http://127.0.0.1:9"}}
	api := func(code int, msg string) error { return &googleapi.Error{Code: code, Message: msg} }
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		op    string
		err   error
		is    error  // the error must wrap this
		perm  bool   // be permanent
		retry bool   // be retryable
		says  string // and say this
	}{
		{"get", fmt.Errorf("%w: %w", gs.ErrObjectNotExist, api(404, "No such object: bkt/k")), storage.ErrNotExist, false, false, `gcs: get "k"`},
		{"stat", api(404, "No such object"), storage.ErrNotExist, false, false, ""},
		{"stat", fmt.Errorf("%w: %w", gs.ErrObjectNotExist, api(404, "The specified bucket does not exist.")), nil, true, false, `bucket "bkt" does not exist: check --repo`},
		{"put", api(404, "Not Found"), nil, true, false, `bucket "bkt" does not exist`},
		{"list", gs.ErrBucketNotExist, nil, true, false, `bucket "bkt" does not exist`},
		{"put", api(412, "conditionNotMet"), storage.ErrExist, false, false, ""},
		{"get", api(416, "Requested range not satisfiable"), storage.ErrInvalidRange, false, false, ""},
		{"get", api(401, "Invalid Credentials"), nil, true, false, "GOOGLE_APPLICATION_CREDENTIALS or --gcs-credentials-file"},
		{"put", api(403, "sa@p.iam.gserviceaccount.com does not have storage.objects.create access\nmore"), nil, true, false, "storage.objects.create access): check"},
		{"put", api(400, "Invalid argument"), nil, true, false, "--gcs-kms-key-name"},
		{"get", api(503, "backend error"), nil, false, true, "503"},
		{"get", api(429, "rate"), nil, false, true, "429"},
		{"get", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), io.ErrUnexpectedEOF, false, true, ""},
		{"delete", context.Canceled, context.Canceled, false, false, ""},
		{"stat", fmt.Errorf("Get %q: %w", "http://127.0.0.1:9/x", refused), syscall.ECONNREFUSED, false, true, "endpoint http://127.0.0.1:9 (set by --gcs-endpoint or STORAGE_EMULATOR_HOST)"},
	} {
		err := s.translateError(tc.op, "k", tc.err)
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s %v: %v does not wrap %v", tc.op, tc.err, err, tc.is)
		}
		if storage.IsPermanent(err) != tc.perm {
			t.Errorf("%s %v: %v: permanent %v, want %v", tc.op, tc.err, err, !tc.perm, tc.perm)
		}
		if retry.Retryable(err) != tc.retry {
			t.Errorf("%s %v: %v: retryable %v, want %v", tc.op, tc.err, err, !tc.retry, tc.retry)
		}
		if !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %v: message %q, want one line containing %q", tc.op, tc.err, err, tc.says)
		}
	}
	if s.translateError("get", "k", nil) != nil {
		t.Error("translateError(nil) != nil")
	}
}

func TestAPIEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:4443":                      "http://127.0.0.1:4443/storage/v1/",
		"http://localhost:4443":               "http://localhost:4443/storage/v1/",
		"https://gcs.example.com/":            "https://gcs.example.com/storage/v1/",
		"https://gcs.example.com/storage/v1":  "https://gcs.example.com/storage/v1/",
		"https://gcs.example.com/storage/v1/": "https://gcs.example.com/storage/v1/",
	} {
		if got, err := apiEndpoint(in); err != nil || got != want {
			t.Errorf("apiEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"ftp://host", "http://", "http://[::1"} {
		if got, err := apiEndpoint(in); err == nil {
			t.Errorf("apiEndpoint(%q) = %q, want an error", in, got)
		}
	}
}

func TestChunkSize(t *testing.T) {
	s := &Store{cfg: Config{ChunkSize: 8 << 20}}
	for size, want := range map[int64]int{-1: 8 << 20, 0: 1, 100: 101, 8<<20 - 1: 8 << 20, 8 << 20: 8 << 20, 1 << 30: 8 << 20} {
		if got := s.chunkSize(size); got != want {
			t.Errorf("chunkSize(%d) = %d, want %d", size, got, want)
		}
	}
}
