package extract

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxIdentBytes is PostgreSQL's longest name (NAMEDATALEN - 1): a longer one is
// silently truncated, so pgb refuses to make one.
const maxIdentBytes = 63

// Table is a table's schema and name, exactly as the catalog holds them.
type Table struct{ Schema, Name string }

// String is the table as SQL names it: both parts double-quoted.
func (t Table) String() string { return QuoteIdent(t.Schema) + "." + QuoteIdent(t.Name) }

// Pattern is the pg_dump --table pattern that matches this table and no other:
// inside double quotes pg_dump takes every character literally ("" for a quote).
func (t Table) Pattern() string { return t.String() }

// QuoteIdent is name as a double-quoted SQL identifier.
func QuoteIdent(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// ParseTable reads --table: SCHEMA.NAME or NAME (schema public), each part as SQL
// writes it: unquoted, folded to lower case (ASCII letters, as PostgreSQL does), or
// double-quoted, taken as is ("" for a quote; dots and capitals allowed).
func ParseTable(s string) (Table, error) {
	var parts []string
	var cur strings.Builder
	quoted, inQuotes, started := false, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuotes && c == '"' && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case c == '"' && (inQuotes || !started):
			inQuotes, quoted, started = !inQuotes, true, true
		case c == '"':
			return Table{}, fmt.Errorf("table %q: a double quote in the middle of an unquoted name (quote the whole part: \"na\"\"me\")", s)
		case inQuotes:
			cur.WriteByte(c)
		case c == '.':
			if cur.Len() == 0 && !quoted {
				return Table{}, fmt.Errorf("table %q: an empty name", s)
			}
			parts = append(parts, cur.String())
			cur.Reset()
			quoted, started = false, false
		case quoted:
			return Table{}, fmt.Errorf("table %q: text after a closing double quote", s)
		default:
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			cur.WriteByte(c)
			started = true
		}
	}
	if inQuotes {
		return Table{}, fmt.Errorf("table %q: an unterminated double quote", s)
	}
	if cur.Len() == 0 && !quoted {
		return Table{}, fmt.Errorf("table %q: an empty name", s)
	}
	parts = append(parts, cur.String())
	var t Table
	switch len(parts) {
	case 1:
		t = Table{Schema: "public", Name: parts[0]}
	case 2:
		t = Table{Schema: parts[0], Name: parts[1]}
	default:
		return Table{}, fmt.Errorf("table %q: want SCHEMA.NAME (double-quote a name that holds a dot)", s)
	}
	for _, p := range []string{t.Schema, t.Name} {
		if err := checkIdent(p); err != nil {
			return Table{}, fmt.Errorf("table %q: %w", s, err)
		}
	}
	return t, nil
}

// checkIdent refuses what PostgreSQL cannot name: empty, a NUL, invalid UTF-8, or
// longer than 63 bytes (PostgreSQL would truncate it).
func checkIdent(s string) error {
	switch {
	case s == "":
		return errors.New("an empty name")
	case strings.ContainsRune(s, 0):
		return errors.New("a name with a NUL byte")
	case !utf8.ValidString(s):
		return errors.New("a name that is not UTF-8")
	case len(s) > maxIdentBytes:
		return fmt.Errorf("name %s is %d bytes long, PostgreSQL's limit is %d", QuoteIdent(s), len(s), maxIdentBytes)
	}
	return nil
}
