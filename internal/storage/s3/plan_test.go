package s3

import "testing"

// The part plan fits S3's 5 TiB object limit into 10,000 parts of any allowed base
// size, keeps the configured size for small objects, and fits a known size exactly.
func TestPartPlan(t *testing.T) {
	const tib = 1 << 40
	capacity := func(p partPlan) (total, largest int64) {
		for n := int32(1); int(n) <= p.max; n++ {
			total += p.size(n)
			largest = max(largest, p.size(n))
		}
		return total, largest
	}
	for _, base := range []int64{MinPartSize, DefaultPartSize, 64 << 20} {
		p := newPartPlan(Config{PartSize: base, MaxParts: DefaultMaxParts}, -1)
		if total, _ := capacity(p); total < 5*tib {
			t.Errorf("base %d: a stream of unknown size fits only %d bytes in %d parts, want 5 TiB", base, total, p.max)
		}
		if p.size(1) != base || p.size(DefaultMaxParts/10) != base || p.size(DefaultMaxParts/10+1) != 2*base {
			t.Errorf("base %d: sizes %d, %d, %d: want the base for the first tenth, then double", base, p.size(1), p.size(1000), p.size(1001))
		}
	}
	for _, tc := range []struct {
		size     int64
		maxParts int
		wantBase int64
	}{
		{5 * tib, DefaultMaxParts, 525 << 20}, // ceil(5 TiB / 10,000) rounded up to whole MiB
		{100 << 20, DefaultMaxParts, DefaultPartSize},
		{100 << 30, 1000, 103 << 20},
		{0, 1, DefaultPartSize},
	} {
		p := newPartPlan(Config{PartSize: DefaultPartSize, MaxParts: tc.maxParts}, tc.size)
		var total int64
		for n := int32(1); int(n) <= p.flat; n++ {
			total += p.size(n)
		}
		if p.base != tc.wantBase || total < tc.size || p.flat > tc.maxParts {
			t.Errorf("size %d in %d parts: base %d, %d flat parts for %d bytes; want base %d and room for the size", tc.size, tc.maxParts, p.base, p.flat, total, tc.wantBase)
		}
	}
	if got := newPartPlan(Config{PartSize: MaxPartSize, MaxParts: 2}, -1).size(2); got != MaxPartSize {
		t.Errorf("the part size grew past S3's maximum: %d", got)
	}
}
