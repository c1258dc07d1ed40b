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

// Combine gives the checksum of the whole from its pieces, whatever the split.
func TestCombineEqualsTheWhole(t *testing.T) {
	data := make([]byte, 300000)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	whole := Checksum(data)
	for _, cut := range []int{0, 1, 7, 4096, 65536, 123457, len(data) - 1, len(data)} {
		if got := Combine(Checksum(data[:cut]), Checksum(data[cut:]), int64(len(data)-cut)); got != whole {
			t.Errorf("cut at %d: %#x, want %#x", cut, got, whole)
		}
	}
}

// Hex writes a checksum as manifests hold it: 8 lowercase hex digits, big-endian.
func TestHex(t *testing.T) {
	for v, want := range map[uint32]string{0: "00000000", 0xe3069283: "e3069283", 0x0000abcd: "0000abcd"} {
		if got := Hex(v); got != want {
			t.Errorf("Hex(%#x) = %s, want %s", v, got, want)
		}
	}
}
