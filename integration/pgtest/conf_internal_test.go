package pgtest

import "testing"

func TestParseConfLine(t *testing.T) {
	for _, tc := range []struct {
		line, name, value string
		ok                bool
	}{
		{"a = 1", "a", "1", true},
		{"a=1", "a", "1", true},
		{"a '1'", "a", "1", true},
		{"  work_mem = 5MB # comment", "work_mem", "5MB", true},
		{"restore_command = 'cp /x/%f \"%p\"'", "restore_command", "cp /x/%f \"%p\"", true},
		{"a = 'it''s' # c", "a", "it's", true},
		{"a = 'x", "", "", false},
		{"= 1", "", "", false},
	} {
		name, value, ok := parseConfLine(tc.line)
		if ok != tc.ok || (ok && (name != tc.name || value != tc.value)) {
			t.Errorf("parseConfLine(%q) = %q, %q, %v; want %q, %q, %v", tc.line, name, value, ok, tc.name, tc.value, tc.ok)
		}
	}
}
