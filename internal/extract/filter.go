package extract

import (
	"bytes"
	"regexp"
)

// sequenceSet is a pg_restore --list entry that sets a sequence's value:
// "ID; OID OID SEQUENCE SET schema name owner". The entry's kind comes before any
// name, so a name cannot make another entry look like one.
var sequenceSet = regexp.MustCompile(`^[0-9]+; [0-9]+ [0-9]+ SEQUENCE SET `)

// withoutSequenceSet is a pg_restore table of contents without its SEQUENCE SET
// entries: loading rows into a live table must not move the live sequences back to
// where they were at the target.
func withoutSequenceSet(toc []byte) []byte {
	var out bytes.Buffer
	for _, l := range bytes.SplitAfter(toc, []byte("\n")) {
		if !sequenceSet.Match(l) {
			out.Write(l)
		}
	}
	return out.Bytes()
}
