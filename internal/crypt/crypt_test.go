package crypt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Key material never appears in an error: a secret pasted into the wrong setting is
// named by its position, not quoted.
func TestErrorsNeverQuoteKeyMaterial(t *testing.T) {
	id, rcp, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	mac := NewMACKey()
	for _, in := range []string{id, mac, rcp + "," + mac, "age1notarealkey" + mac[12:]} {
		_, _, err := ParseRecipients(in)
		if err == nil {
			t.Fatalf("%q parsed as recipients", in)
		}
		for _, secret := range []string{id[16:40], mac[12:40]} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q quotes key material", err)
			}
		}
	}
	if _, err := ParseMACKey(mac[:len(mac)-1]); err == nil || strings.Contains(err.Error(), mac[12:30]) {
		t.Errorf("a short MAC key: %v", err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "id.txt")
	if err := os.WriteFile(p, []byte(mac+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIdentityFile(p); err == nil || strings.Contains(err.Error(), mac[12:30]) {
		t.Errorf("an identity file holding a MAC key: %v", err)
	}
}

func TestIdentityFileOthersCanReadIsRefused(t *testing.T) {
	id, _, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id.txt")
	if err := os.WriteFile(p, []byte(id+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIdentityFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable identity file: %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := ReadIdentityFile(p)
	if err != nil || len(ids) != 1 {
		t.Fatalf("%d identities, %v", len(ids), err)
	}
}

func TestRecipientSetIDIgnoresOrder(t *testing.T) {
	_, a, _ := Generate()
	_, b, _ := Generate()
	if RecipientSetID([]string{a, b}) != RecipientSetID([]string{b, a}) || RecipientSetID([]string{a}) == RecipientSetID([]string{a, b}) {
		t.Fatal("set ids depend on order, or two sets share one")
	}
	rs, names, err := ParseRecipients("# writers\n" + a + ", " + b + "\n")
	if err != nil || len(rs) != 2 || len(names) != 2 {
		t.Fatalf("%d recipients, %v", len(rs), err)
	}
}
