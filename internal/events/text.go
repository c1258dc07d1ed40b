package events

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// width is the terminal width the text output fits.
const width = 80

var kindWords = map[string]string{"r": "TABLE", "p": "TABLE", "m": "MATERIALIZED VIEW", "i": "INDEX", "S": "SEQUENCE", "t": "TOAST TABLE"}

// WriteText prints the events for a terminal of 80 columns: per event a title
// line with the commit time, a line with the transaction, LSN, timeline and
// database, and the restore command that stops just before it.
func WriteText(w io.Writer, res *Result, minRows int64) error {
	var b strings.Builder
	if len(res.Events) == 0 {
		fmt.Fprintf(&b, "no destructive events in %d archived segments (transactions count from %d rows)\n", res.Segments, minRows)
		_, err := io.WriteString(w, b.String())
		return err
	}
	b.WriteString("Each event's command restores to just before it (DIR: an empty directory).\n")
	for i := range res.Events {
		e := &res.Events[i]
		b.WriteString("\n")
		verb, names, suffix := e.title()
		b.WriteString(e.Time.UTC().Format("2006-01-02 15:04:05.000000 UTC") + "  " + strings.TrimSpace(verb) + "\n")
		if e.Kind != DatabaseDropped {
			db := printable(e.DatabaseName)
			if db == "" {
				db = fmt.Sprintf("with oid %d", e.Database)
			}
			suffix += " in database " + db
		}
		fit(&b, "  ", names, suffix)
		fmt.Fprintf(&b, "  xid %d, LSN %s, timeline %d\n", e.Xid, e.LSN, e.Timeline)
		if note := e.note(); note != "" {
			fmt.Fprintf(&b, "  %s\n", note)
		}
		if e.Restore == "" {
			fmt.Fprintf(&b, "  not recoverable: %s\n", e.NotRecoverable)
			continue
		}
		cmd := e.Restore
		if i := strings.LastIndex(cmd, " --target-timeline"); i > 0 && len(cmd)+2 > width {
			cmd = cmd[:i] + " \\\n      " + cmd[i+1:]
		}
		fmt.Fprintf(&b, "  %s\n", cmd)
	}
	noun := "events"
	if len(res.Events) == 1 {
		noun = "event"
	}
	fmt.Fprintf(&b, "\n%d %s in %d archived segments (transactions count from %d rows)\n", len(res.Events), noun, res.Segments, minRows)
	_, err := io.WriteString(w, b.String())
	return err
}

// fit writes head and the names on one line, cutting the list when it would
// not fit ("and N more"), then suffix, on a line of its own when it does not
// fit after them. A single name longer than a line is never cut.
func fit(b *strings.Builder, head string, names []string, suffix string) {
	line := head
	for n := len(names); n >= 1; n-- {
		line = head + strings.Join(names[:n], ", ")
		if n < len(names) {
			line += fmt.Sprintf(" and %d more", len(names)-n)
		}
		if len(line) <= width {
			break
		}
	}
	if len(line+suffix) <= width {
		b.WriteString(line + suffix + "\n")
		return
	}
	b.WriteString(line + "\n" + head + strings.TrimSpace(suffix) + "\n")
}

// title says what happened: "DROP TABLE " and the names, "DELETE 5000 rows
// of " and the name, and what follows the names.
func (e *Event) title() (verb string, names []string, suffix string) {
	switch e.Kind {
	case DatabaseDropped:
		if e.DatabaseName != "" {
			return "DROP DATABASE ", []string{printable(e.DatabaseName)}, ""
		}
		return "DROP DATABASE ", []string{fmt.Sprintf("with oid %d", e.Database)}, ""
	case RowsChanged:
		var what []string
		if e.Deleted > 0 {
			what = append(what, fmt.Sprintf("DELETE %d", e.Deleted))
		}
		if e.Updated > 0 {
			what = append(what, fmt.Sprintf("UPDATE %d", e.Updated))
		}
		return strings.Join(what, ", ") + " rows of ", []string{e.Relations[0].label()}, ""
	}
	verb = map[Kind]string{TableDropped: "DROP", TableTruncated: "TRUNCATE", TableRewritten: "REWRITE"}[e.Kind]
	main, other := e.mainRelations()
	kind := ""
	for _, r := range main {
		if k := kindWords[r.Kind]; k != "" && (kind == "" || kind == k) {
			kind = k
		}
		names = append(names, r.label())
	}
	if e.Kind == TableTruncated || kind == "" {
		verb += " " // TRUNCATE applies to tables only
	} else {
		verb += " " + kind + " "
	}
	if other > 0 {
		suffix = fmt.Sprintf(" (+%d index, TOAST or sequence files)", other)
	}
	return verb, names, suffix
}

// mainRelations are the relations an event is about: tables and materialized
// views, and files no map names; the indexes, TOAST tables and sequences that
// went with them are counted. An event on those alone lists them.
func (e *Event) mainRelations() ([]Relation, int) {
	var main []Relation
	for _, r := range e.Relations {
		switch r.Kind {
		case "i", "t", "S":
		default:
			main = append(main, r)
		}
	}
	if len(main) == 0 {
		return e.Relations, 0
	}
	return main, len(e.Relations) - len(main)
}

// label names a relation, or its file when no map does.
func (r Relation) label() string {
	if n := r.QualifiedName(); n != "" {
		return printable(n)
	}
	return "file " + r.FileID
}

// printable quotes a name from the repository that holds anything a terminal
// would interpret (control characters, invalid UTF-8): names are untrusted.
func printable(s string) string {
	for _, c := range s {
		if c == utf8.RuneError || !unicode.IsPrint(c) {
			return strconv.Quote(s)
		}
	}
	return s
}

// note explains unnamed relations.
func (e *Event) note() string {
	unnamed := false
	for _, r := range e.Relations {
		unnamed = unnamed || r.Name == ""
	}
	switch {
	case e.Kind == TableRewritten:
		return "(VACUUM FULL, CLUSTER or ALTER TABLE rewrote it)"
	case !unnamed:
		return ""
	case e.NamesFrom == "":
		return "(no backup recorded relation names: files are tablespace/database/relfilenode)"
	}
	return "(a file backup " + e.NamesFrom + " does not name was created after it)"
}
