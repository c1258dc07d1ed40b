package crc32c

import "testing"

// The check value of CRC-32C (RFC 3720, appendix B.4) and its running form.
func TestChecksumIsCastagnoli(t *testing.T) {
	if got := Checksum([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("Checksum(123456789) = %#x, want 0xe3069283", got)
	}
	h := New()
	_, _ = h.Write([]byte("1234"))
	_, _ = h.Write([]byte("56789"))
	if got := h.Sum32(); got != 0xe3069283 {
		t.Fatalf("New() over two writes = %#x, want 0xe3069283", got)
	}
}
