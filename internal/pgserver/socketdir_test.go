package pgserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// splitDirectories is PostgreSQL's SplitDirectoriesString (varlena.c), how the server
// reads unix_socket_directories: comma-separated names, each unquoted (trailing spaces
// dropped) or in double quotes ("" a quote).
func splitDirectories(s string) ([]string, bool) {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t\n\r\f\v")
		var name string
		if strings.HasPrefix(s, `"`) {
			s = s[1:]
			for {
				i := strings.IndexByte(s, '"')
				if i < 0 {
					return nil, false
				}
				name += s[:i]
				s = s[i+1:]
				if !strings.HasPrefix(s, `"`) {
					break
				}
				name += `"`
				s = s[1:]
			}
		} else {
			i := strings.IndexByte(s, ',')
			if i < 0 {
				i = len(s)
			}
			name, s = strings.TrimRight(s[:i], " \t\n\r\f\v"), s[i:]
			if name == "" {
				return nil, false
			}
		}
		out = append(out, name)
		s = strings.TrimLeft(s, " \t\n\r\f\v")
		if s == "" {
			return out, true
		}
		if s[0] != ',' {
			return nil, false
		}
		s = s[1:]
	}
}

// A scratch directory whose name holds a comma (or quotes, or spaces) is one socket
// directory to the server: a comma must not put a trust-authenticated superuser
// socket into a second directory.
func TestServerOnAScratchDirWithACommaListensInThatDirOnly(t *testing.T) {
	bin := t.TempDir()
	out := filepath.Join(bin, "args")
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > " + out + "\n"
	if err := os.WriteFile(filepath.Join(bin, "postgres"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a,b", `say "hi", world `, "plain"} {
		sock := filepath.Join(t.TempDir(), name)
		if err := os.Mkdir(sock, 0o700); err != nil {
			t.Fatal(err)
		}
		s := &Server{Bin: bin, DataDir: filepath.Join(sock, "data"), SockDir: sock, Port: 5999, LogFile: filepath.Join(sock, "log")}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		if err := s.ExitErr(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var value string
		for _, a := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(a, "unix_socket_directories="); ok {
				value = v
			}
		}
		if got, ok := splitDirectories(value); !ok || len(got) != 1 || got[0] != sock {
			t.Errorf("unix_socket_directories=%s is %q to PostgreSQL (valid %v), want only %q", value, got, ok, sock)
		}
	}
}
