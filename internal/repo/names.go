package repo

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// File names are bytes, and JSON strings are UTF-8: encoding/json would silently turn
// a byte that is not UTF-8 into U+FFFD. A name (path, link target, tablespace
// location) that is not valid UTF-8 is therefore written as "<field>_base64" (the
// standard base64 of its bytes) in place of "<field>"; valid names are written as
// they are. See docs/repository-format.md.

// encodeName splits s into the JSON text form or the base64 form.
func encodeName(s string) (text, b64 string) {
	if utf8.ValidString(s) {
		return s, ""
	}
	return "", base64.StdEncoding.EncodeToString([]byte(s))
}

// decodeName is the inverse of encodeName.
func decodeName(field, text, b64 string) (string, error) {
	if b64 == "" {
		return text, nil
	}
	if text != "" {
		return "", fmt.Errorf("both %s and %s_base64 are set", field, field)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("%s_base64: %w", field, err)
	}
	return string(b), nil
}

// MarshalJSON writes Path as a name (see encodeName).
func (f File) MarshalJSON() ([]byte, error) {
	type plain File
	v := struct {
		plain
		Path    string `json:"path,omitempty"`
		PathB64 string `json:"path_base64,omitempty"`
	}{plain: plain(f)}
	v.Path, v.PathB64 = encodeName(f.Path)
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (f *File) UnmarshalJSON(b []byte) error {
	type plain File
	var v struct {
		plain
		Path    string `json:"path"`
		PathB64 string `json:"path_base64"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p, err := decodeName("path", v.Path, v.PathB64)
	if err != nil {
		return err
	}
	*f = File(v.plain)
	f.Path = p
	return nil
}

// MarshalJSON writes Path as a name (see encodeName).
func (d Dir) MarshalJSON() ([]byte, error) {
	type plain Dir
	v := struct {
		plain
		Path    string `json:"path,omitempty"`
		PathB64 string `json:"path_base64,omitempty"`
	}{plain: plain(d)}
	v.Path, v.PathB64 = encodeName(d.Path)
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (d *Dir) UnmarshalJSON(b []byte) error {
	type plain Dir
	var v struct {
		plain
		Path    string `json:"path"`
		PathB64 string `json:"path_base64"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p, err := decodeName("path", v.Path, v.PathB64)
	if err != nil {
		return err
	}
	*d = Dir(v.plain)
	d.Path = p
	return nil
}

// MarshalJSON writes Path and Target as names (see encodeName).
func (l Link) MarshalJSON() ([]byte, error) {
	type plain Link
	v := struct {
		plain
		Path      string `json:"path,omitempty"`
		PathB64   string `json:"path_base64,omitempty"`
		Target    string `json:"target,omitempty"`
		TargetB64 string `json:"target_base64,omitempty"`
	}{plain: plain(l)}
	v.Path, v.PathB64 = encodeName(l.Path)
	v.Target, v.TargetB64 = encodeName(l.Target)
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (l *Link) UnmarshalJSON(b []byte) error {
	type plain Link
	var v struct {
		plain
		Path      string `json:"path"`
		PathB64   string `json:"path_base64"`
		Target    string `json:"target"`
		TargetB64 string `json:"target_base64"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p, err := decodeName("path", v.Path, v.PathB64)
	if err != nil {
		return err
	}
	target, err := decodeName("target", v.Target, v.TargetB64)
	if err != nil {
		return err
	}
	*l = Link(v.plain)
	l.Path, l.Target = p, target
	return nil
}

// MarshalJSON writes Location as a name (see encodeName).
func (t Tablespace) MarshalJSON() ([]byte, error) {
	type plain Tablespace
	v := struct {
		plain
		Location    string `json:"location,omitempty"`
		LocationB64 string `json:"location_base64,omitempty"`
	}{plain: plain(t)}
	v.Location, v.LocationB64 = encodeName(t.Location)
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (t *Tablespace) UnmarshalJSON(b []byte) error {
	type plain Tablespace
	var v struct {
		plain
		Location    string `json:"location"`
		LocationB64 string `json:"location_base64"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	loc, err := decodeName("location", v.Location, v.LocationB64)
	if err != nil {
		return err
	}
	*t = Tablespace(v.plain)
	t.Location = loc
	return nil
}
