package crypt

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
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

// A passphrase key declaring a costlier scrypt than pgb writes is refused before any
// work: a hostile repository cannot make readers spend seconds and gigabytes.
func TestAPassphraseKeyWithAHigherWorkFactorIsRefused(t *testing.T) {
	sr, err := age.NewScryptRecipient("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	sr.SetWorkFactor(1) // cheap to make; the header then claims 2^22
	var b strings.Builder
	w, err := age.Encrypt(&b, sr)
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	hostile := strings.Replace(b.String(), " 1\n", " 22\n", 1)
	if hostile == b.String() {
		t.Fatalf("test is wrong: no work factor found in %q", b.String())
	}
	_, err = OpenPassphraseKey("correct horse battery staple", []byte(hostile))
	if err == nil || !strings.Contains(err.Error(), "work factor") {
		t.Fatalf("err = %v", err)
	}
}

// Recipients age will not encrypt to together (post-quantum and classic mixed) are
// refused when the keys are checked, not at the first write (found by review); a
// post-quantum recipient alone works, written and read back.
func TestRecipientsAgeCannotUseTogetherAreRefusedUpFront(t *testing.T) {
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	_, classic, _ := Generate()
	mac, _ := ParseMACKey(NewMACKey())
	rs, names, err := ParseRecipients(pq.Recipient().String() + "," + classic)
	if err != nil {
		t.Fatal(err)
	}
	if err := New(rs, names, nil, mac).CanWrite(); err == nil || !strings.Contains(err.Error(), "cannot be used together") {
		t.Fatalf("mixed recipients: %v", err)
	}
	rs, names, err = ParseRecipients(pq.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	k := New(rs, names, []age.Identity{pq}, mac)
	if err := k.CanWrite(); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	w, err := k.Encrypt(&b)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("row"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := k.Decrypt(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); string(got) != "row" {
		t.Fatalf("read back %q", got)
	}
}

// The trial encryption behind CanWrite is done once per set of keys, including copies
// made by WithReadMACKeys: every Repo asks, and the look-ahead archiver makes one per
// segment (measured: three trial encryptions per encrypted segment pushed, each two
// X25519 operations, for one real one). Its verdict is remembered too.
func TestCanWriteTriesTheRecipientsOnce(t *testing.T) {
	_, rcpt, _ := Generate()
	mac, _ := ParseMACKey(NewMACKey())
	rs, names, err := ParseRecipients(rcpt)
	if err != nil {
		t.Fatal(err)
	}
	k := New(rs, names, nil, mac)
	if err := k.CanWrite(); err != nil {
		t.Fatal(err)
	}
	c := k.WithReadMACKeys(mac)
	if n := testing.AllocsPerRun(10, func() {
		if k.CanWrite() != nil || c.CanWrite() != nil {
			t.Fatal("CanWrite changed its verdict")
		}
	}); n != 0 {
		t.Fatalf("CanWrite encrypts again: %v allocations a call", n)
	}
	pq, _ := age.GenerateHybridIdentity()
	rs, names, _ = ParseRecipients(pq.Recipient().String() + "," + rcpt)
	bad := New(rs, names, nil, mac)
	for i := 0; i < 2; i++ {
		if err := bad.CanWrite(); err == nil {
			t.Fatalf("call %d: mixed recipients accepted", i)
		}
	}
}
