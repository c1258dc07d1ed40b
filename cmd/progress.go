package cmd

import (
	"fmt"
	"io"
	"os"
	"time"
)

// isTTY reports whether w is a terminal.
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress returns a callback that redraws one status line on a terminal, and nil
// (no progress at all) when stderr is not one, as under cron.
func progress(w io.Writer, what string) func(done, total int64) {
	if !isTTY(w) {
		return nil
	}
	var m rateMeter
	return func(done, total int64) {
		// Progress is cosmetic: a failed write must not fail the command.
		_, _ = fmt.Fprint(w, progressLine(what, done, total, m.rate(time.Now(), done)))
		if done >= total {
			_, _ = fmt.Fprintln(w)
		}
	}
}

// maxETA is the longest time left a progress line names (a stalled copy's rate would
// overflow a time.Duration).
const maxETA = 100 * 24 * time.Hour

// progressLine is one redraw of the status line: bytes done of total, the share, the
// rate (bytes per second) and the time left at that rate.
func progressLine(what string, done, total int64, rate float64) string {
	pct := 100.0
	if total > 0 {
		pct = float64(done) * 100 / float64(total)
	}
	eta := ""
	switch {
	case done >= total:
	case rate > 0 && float64(total-done)/rate < maxETA.Seconds():
		eta = ", " + time.Duration(float64(total-done)/rate*float64(time.Second)).Round(time.Second).String() + " left"
	case rate > 0:
		eta = ", more than 100 days left"
	default:
		eta = ", time left unknown"
	}
	return fmt.Sprintf("\r%s: %s of %s (%.0f%%), %.0f MB/s%s   ", what, human(done), human(total), pct, rate/(1<<20), eta)
}

// human formats a byte count.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// rateMeter measures bytes per second from its first reading on: the copy's own rate,
// not counting what came before it (a spread checkpoint).
type rateMeter struct {
	start   time.Time
	done0   int64
	started bool
}

func (m *rateMeter) rate(now time.Time, done int64) float64 {
	if !m.started {
		m.start, m.done0, m.started = now, done, true
	}
	d := now.Sub(m.start).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(done-m.done0) / d
}
