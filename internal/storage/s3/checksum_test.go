package s3_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/pgb-project/pgb/internal/storage"
	"github.com/pgb-project/pgb/internal/storage/s3"
	"github.com/pgb-project/pgb/internal/storage/s3/s3test"
)

// A store that rejects the SDK's default checksum headers refuses pgb's writes with
// the default s3-checksum, with an error naming the setting, and takes them, small and
// multipart, with s3-checksum: when-required.
func TestChecksumWhenRequiredForStoresThatRejectChecksumHeaders(t *testing.T) {
	small, big := []byte("a small object"), pattern(21, 2*s3.MinPartSize+7)
	for _, tc := range []struct {
		mode    s3.ChecksumMode
		wantErr bool
	}{
		{s3.ChecksumWhenSupported, true},
		{s3.ChecksumWhenRequired, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			cfg := goFakeConfig(t)
			cfg.Checksum = tc.mode
			cr := &s3test.ChecksumRejecting{}
			cfg.WrapTransport = cr.Wrap
			st := newStore(t, cfg)
			for _, obj := range []struct {
				key  string
				data []byte
				size int64
			}{
				{"small", small, int64(len(small))},
				{"big", big, -1},
			} {
				err := st.Put(t.Context(), obj.key, io.MultiReader(bytes.NewReader(obj.data)), storage.PutOptions{Size: obj.size})
				switch {
				case tc.wantErr && err == nil:
					t.Fatalf("Put(%s) with %v succeeded on a store that rejects checksum headers", obj.key, tc.mode)
				case tc.wantErr && !strings.Contains(err.Error(), "s3-checksum: when-required"):
					t.Errorf("Put(%s): %v; want an error that names s3-checksum: when-required", obj.key, err)
				case !tc.wantErr && err != nil:
					t.Fatalf("Put(%s) with %v: %v", obj.key, tc.mode, err)
				case !tc.wantErr:
					if got := readAll(t, st, obj.key); !bytes.Equal(got, obj.data) {
						t.Fatalf("%s: read back %d bytes, not what was written", obj.key, len(got))
					}
				}
			}
			if tc.wantErr && cr.Rejected() == 0 {
				t.Fatal("no request carried checksum headers")
			}
			if !tc.wantErr && cr.Rejected() != 0 {
				t.Fatalf("%d requests carried checksum headers", cr.Rejected())
			}
		})
	}
}

// ProbeChecksums tells which s3-checksum a store needs, whatever is configured.
func TestProbeChecksums(t *testing.T) {
	for _, tc := range []struct {
		name          string
		reject        bool
		mode          s3.ChecksumMode
		wantSupported bool
	}{
		{"accepting store", false, s3.ChecksumWhenSupported, true},
		{"accepting store, when-required set", false, s3.ChecksumWhenRequired, true},
		{"rejecting store", true, s3.ChecksumWhenSupported, false},
		{"rejecting store, when-required set", true, s3.ChecksumWhenRequired, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := goFakeConfig(t)
			cfg.Checksum = tc.mode
			if tc.reject {
				cfg.WrapTransport = (&s3test.ChecksumRejecting{}).Wrap
			}
			st := newStore(t, cfg)
			supported, err := st.ProbeChecksums(t.Context())
			if err != nil || supported != tc.wantSupported {
				t.Fatalf("ProbeChecksums = %v, %v; want %v, nil", supported, err, tc.wantSupported)
			}
			if ks := keys(t, st, ""); len(ks) != 0 {
				t.Fatalf("the probe left %q behind", ks)
			}
		})
	}
}

// Both real S3 implementations take the SDK's default checksums.
func TestRealServersAcceptChecksums(t *testing.T) {
	for name, cfg := range map[string]func(testing.TB) s3.Config{"versitygw": versityConfig, "seaweedfs": seaweedConfig} {
		t.Run(name, func(t *testing.T) {
			st := newStore(t, cfg(t))
			if supported, err := st.ProbeChecksums(t.Context()); err != nil || !supported {
				t.Fatalf("ProbeChecksums = %v, %v; want true, nil", supported, err)
			}
		})
	}
}
