// Package bytesize writes byte counts for people: 4.0 GiB, 12.5 MiB, 512 B.
package bytesize

import "fmt"

// Text is n bytes with one decimal in the largest binary unit it reaches.
func Text(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
