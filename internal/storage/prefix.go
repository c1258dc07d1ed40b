package storage

import (
	"fmt"
	"strings"
)

// ValidPrefix reports whether prefix can be a List prefix: the empty string, or a string
// that could begin a valid key (see ValidKey). Every element before the last "/" must be
// a valid key element; the last element is a partial name and may be anything without
// NUL or backslash ("a/b" matches "a/b/c" and "a/bc", "a/" matches everything under a).
// Backends reject other prefixes with ErrInvalidKey rather than silently matching
// nothing, so that a malformed prefix (for example "/abs" or "a/../b") surfaces as a bug.
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if strings.ContainsAny(prefix, "\x00\\") {
		return fmt.Errorf("%w: list prefix %q", ErrInvalidKey, prefix)
	}
	els := strings.Split(prefix, "/")
	for _, el := range els[:len(els)-1] {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("%w: list prefix %q", ErrInvalidKey, prefix)
		}
	}
	return nil
}
