package storage

import (
	"fmt"
	"strings"
)

// ValidKey reports whether key is acceptable to every backend: non-empty, relative,
// "/"-separated, without empty, "." or ".." elements, and without NUL or backslash.
func ValidKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	if strings.ContainsAny(key, "\x00\\") {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	for _, el := range strings.Split(key, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("%w: %q", ErrInvalidKey, key)
		}
	}
	return nil
}
