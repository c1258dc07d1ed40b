package status

import (
	"fmt"
	"time"
)

// writeDrills prints the last successful drill and a failed one after it.
func (r *Report) writeDrills(p func(string, ...any), short func(time.Time) string) {
	d := r.Drills
	if d == nil {
		return
	}
	if s := d.LastSuccess; s != nil {
		head := fmt.Sprintf("Last successful drill: %s (%s ago)", short(s.Finished), ageText(s.AgeSeconds))
		if b := ", backup " + s.Backup; len(head)+len(b) <= 80 {
			p("%s%s", head, b)
		} else {
			p("%s", head)
			p("  backup %s", s.Backup)
		}
		line := fmt.Sprintf("  RTO %s (restore %s, replay %s)", secs(s.RTOSeconds), secs(s.RestoreSeconds), secs(s.ReplaySeconds))
		if s.RPOSeconds != nil {
			line += fmt.Sprintf(", RPO %.3f s", *s.RPOSeconds)
		}
		p("%s", line)
	} else {
		p("Last successful drill: none recorded")
	}
	if f := d.LastFailed; f != nil {
		p("Last drill FAILED:     %s (%s ago)", short(f.Finished), ageText(f.AgeSeconds))
		lines := wrap(f.Error, 76)
		if len(lines) > 3 {
			lines = append(lines[:2], lines[2][:min(len(lines[2]), 72)]+" …")
		}
		for _, l := range lines {
			p("  %s", l)
		}
	}
}

// secs is a duration in seconds, one decimal.
func secs(s float64) string { return fmt.Sprintf("%.1f s", s) }
