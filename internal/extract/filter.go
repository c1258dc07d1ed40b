package extract

import (
	"bufio"
	"bytes"
	"io"
)

// dropSetval copies a plain pg_dump script from r to w without its
// "SELECT pg_catalog.setval(…)" lines (outside COPY data): loading rows into a live
// table must not move the live sequences back to where they were at the target.
func dropSetval(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<16)
	inCopy := false
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			body := bytes.TrimRight(line, "\r\n")
			skip := false
			switch {
			case inCopy:
				inCopy = !bytes.Equal(body, []byte(`\.`))
			case bytes.HasPrefix(body, []byte("COPY ")) && bytes.HasSuffix(body, []byte(" FROM stdin;")):
				inCopy = true
			case bytes.HasPrefix(body, []byte("SELECT pg_catalog.setval(")):
				skip = true
			}
			if !skip {
				if _, werr := w.Write(line); werr != nil {
					return werr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
