package bytesize

import "testing"

func TestText(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 512: "512 B", 1536: "1.5 KiB", 12<<20 + 1<<19: "12.5 MiB", 4 << 30: "4.0 GiB"} {
		if got := Text(n); got != want {
			t.Errorf("Text(%d) = %q, want %q", n, got, want)
		}
	}
}
