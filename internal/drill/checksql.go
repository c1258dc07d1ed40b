package drill

import (
	"fmt"
	"strings"
)

// Statement is one --check-sql statement and the line it starts on.
type Statement struct {
	Line int    `json:"line"`
	SQL  string `json:"sql"`
}

// ParseCheckSQL splits a --check-sql file into statements: a statement ends on a line
// whose text ends with ";" (trailing blanks ignored); blank lines and lines starting
// with "--" between statements are skipped. A statement left without its ";" at the
// end of the file is one too. The ";" inside a line (a string, a second statement on
// the same line) does not split: one statement per ";"-ended line group.
func ParseCheckSQL(text string) ([]Statement, error) {
	var out []Statement
	var cur []string
	start := 0
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if len(cur) == 0 && (t == "" || strings.HasPrefix(t, "--")) {
			continue
		}
		if len(cur) == 0 {
			start = i + 1
		}
		cur = append(cur, strings.TrimRight(line, " \t\r"))
		if strings.HasSuffix(t, ";") {
			s := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(strings.Join(cur, "\n")), ";"))
			if s == "" {
				return nil, fmt.Errorf("line %d: an empty statement", start)
			}
			out = append(out, Statement{Line: start, SQL: s})
			cur = nil
		}
	}
	if len(cur) > 0 {
		out = append(out, Statement{Line: start, SQL: strings.TrimSpace(strings.Join(cur, "\n"))})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no statement in it")
	}
	return out, nil
}

// Passed says whether a check statement's result passes: a boolean first column of
// the first row must be true; any other result must have a row.
func Passed(rows [][]any) (bool, string) {
	if len(rows) == 0 {
		return false, "no row returned"
	}
	if len(rows[0]) == 0 {
		return true, ""
	}
	switch v := rows[0][0].(type) {
	case bool:
		if !v {
			return false, "returned false"
		}
	case nil:
		if len(rows[0]) == 1 {
			return false, "returned NULL"
		}
	}
	return true, ""
}
