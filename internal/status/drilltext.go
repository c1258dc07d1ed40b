package status

import (
	"fmt"
	"strings"
	"time"
	"unicode"
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
		lines := wrapRunes(printable(f.Error), 76)
		if len(lines) > 3 {
			third := []rune(lines[2])
			lines = append(lines[:2], string(third[:min(len(third), 72)])+" …")
		}
		for _, l := range lines {
			p("  %s", l)
		}
	}
}

// secs is a duration in seconds, one decimal.
func secs(s float64) string { return fmt.Sprintf("%.1f s", s) }

// printable is untrusted text (a drill record's error, host) made safe to print on a
// terminal: invalid UTF-8 replaced, control characters (escape sequences, carriage
// returns, newlines) and bidirectional overrides turned into spaces.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// wrapRunes is wrap counting characters, not bytes, and breaking a word longer than
// width (a path, a key) into pieces of width characters.
func wrapRunes(s string, width int) []string {
	var lines []string
	var line []rune
	for _, w := range strings.Fields(s) {
		word := []rune(w)
		if len(line) > 0 && len(line)+1+len(word) > width {
			lines, line = append(lines, string(line)), nil
		}
		if len(line) > 0 {
			line = append(line, ' ')
		}
		for len(line)+len(word) > width {
			n := width - len(line)
			lines, line, word = append(lines, string(append(line, word[:n]...))), nil, word[n:]
		}
		line = append(line, word...)
	}
	if len(line) > 0 {
		lines = append(lines, string(line))
	}
	return lines
}
