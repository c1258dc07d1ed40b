package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// keys are what pgb keygen made: the identity file (readers) and the settings writers
// take.
type keys struct {
	identity, recipient, macKey string
}

func keygen(t *testing.T) keys {
	t.Helper()
	path := filepath.Join(pgtest.TempDir(t), "identity.txt")
	r := mustPGB(t, "", nil, "keygen", path)
	pgtest.ChownToPG(t, path)
	k := keys{identity: path}
	for _, line := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "encryption-recipients: "); ok {
			k.recipient = v
		}
		if v, ok := strings.CutPrefix(line, "encryption-mac-key: "); ok {
			k.macKey = v
		}
	}
	if k.recipient == "" || k.macKey == "" {
		t.Fatalf("pgb keygen printed no recipient or MAC key: %s", r)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v, mode %v", err, fi.Mode())
	}
	return k
}

// The user's story: the database host holds only the public recipient and the MAC
// key, so whoever gets the bucket or the database host cannot read the backups; the
// restore host holds the identity and recovers every committed row.
func TestEncryptedRepositoryIsUnreadableWithoutTheIdentityAndRestoresEveryRowWithIt(t *testing.T) {
	pgtest.RequireParallel(t)
	k := keygen(t)
	repo := newRepo(t)
	// compression none: were a byte of a row stored unencrypted, it would show as is.
	writer := configFile(t, "repo: "+repo+"\ncompression: none\nencryption: age\nencryption-recipients: "+k.recipient+
		"\nencryption-mac-key: "+k.macKey+"\n")
	reader := configFile(t, "repo: "+repo+"\nencryption-identity-file: "+k.identity+"\n")

	s := newScenarioOn(t, repo, writer)
	var m [16]byte
	_, _ = rand.Read(m[:])
	marker := "pgb-secret-" + hex.EncodeToString(m[:])
	s.src.Exec(t, "INSERT INTO after_drop SELECT 2 FROM (SELECT '"+marker+"') x")
	s.src.Exec(t, "CREATE TABLE secrets AS SELECT '"+marker+"'::text AS s")
	s.src.Exec(t, "CHECKPOINT")
	mustPGB(t, "", s.src.Env(), append(writer[:2:2], "backup-push", "--fast")...)
	s.src.WaitArchived(t, s.src.SwitchWAL(t), 30*time.Second)

	// Nothing in the repository shows the marker; what holds data is cipher 1.
	encrypted := 0
	for _, rel := range repoFiles(t, repo) {
		b, err := os.ReadFile(filepath.Join(repo, rel))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(marker)) {
			t.Fatalf("%s holds the marker row in the clear", rel)
		}
		base := filepath.Base(rel)
		holdsData := strings.HasPrefix(rel, "wal/") && !strings.Contains(base, ".") ||
			base == "manifest" || strings.HasPrefix(base, "part-")
		if holdsData {
			if len(b) < 8 || b[6] != 1 {
				t.Fatalf("%s is not encrypted (header % x)", rel, b[:min(len(b), 8)])
			}
			encrypted++
		}
	}
	if encrypted < 5 {
		t.Fatalf("only %d encrypted objects: the test looked at the wrong files", encrypted)
	}

	// The writer lists backups (summaries stay readable) and sees the window as far as
	// it can without decrypting WAL, but cannot restore.
	mustPGB(t, "", nil, append(writer[:2:2], "backup-list")...)
	if st := mustPGB(t, "", nil, append(writer[:2:2], "status")...); !strings.Contains(st.stdout, "is encrypted and not yet") {
		t.Fatalf("status without the identity does not say why the window's end is unknown:\n%s", st)
	}
	target := filepath.Join(pgtest.TempDir(t), "by-writer")
	r := pgb(t, "", nil, append(writer[:2:2], "restore", "--pgdata", target)...)
	if r.code == 0 || !strings.Contains(r.stderr, "encryption-identity-file") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("restore without the identity: %s", r)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Fatalf("a refused restore wrote %d entries into its target", len(ents))
	}
	// wal-fetch without the identity: exit 255, which stops recovery, never 1 (the end of the archive).
	done := doneSegments(t, s.src)
	seg := done[len(done)-1] // the newest: still in pg_wal for copySegment
	dest := filepath.Join(pgtest.TempDir(t), "seg")
	r = pgb(t, "", nil, append(writer[:2:2], "wal-fetch", "--wal-fetch-prefetch", "0", seg, dest)...)
	if r.code != 255 || !strings.Contains(r.stderr, "encryption-identity-file") {
		t.Fatalf("wal-fetch without the identity: %s", r)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatalf("wal-fetch without the identity left %s: %v", dest, err)
	}

	// Another identity: the same refusals, naming the other recipients.
	other := keygen(t)
	wrong := configFile(t, "repo: "+repo+"\nencryption-identity-file: "+other.identity+"\n")
	r = pgb(t, "", nil, append(wrong[:2:2], "wal-fetch", "--wal-fetch-prefetch", "0", seg, dest)...)
	if r.code != 255 || !strings.Contains(r.stderr, "other recipients") {
		t.Fatalf("wal-fetch with another identity: %s", r)
	}
	r = pgb(t, "", nil, append(wrong[:2:2], "restore", "--pgdata", target)...)
	if r.code == 0 || !strings.Contains(r.stderr, "other recipients") {
		t.Fatalf("restore with another identity: %s", r)
	}

	// The writer recognises its own segment pushed again (no identity needed), and
	// refuses different content under its name.
	r = mustPGB(t, "", nil, append(writer[:2:2], "wal-push", "--pgdata", s.src.DataDir(), copySegment(t, s.src, seg, false))...)
	if !strings.Contains(r.stderr, "already archived with identical content") {
		t.Errorf("duplicate push did not say so:\n%s", r)
	}
	r = pgb(t, "", nil, append(writer[:2:2], "wal-push", "--pgdata", s.src.DataDir(), copySegment(t, s.src, seg, true))...)
	if r.code == 0 || !strings.Contains(r.stderr, "different content") {
		t.Fatalf("conflicting push: %s", r)
	}

	// The reader verifies everything and restores to just before the drop.
	mustPGB(t, "", nil, append(reader[:2:2], "verify", "--wal")...)
	s.sel = reader
	c := s.restore(t, "--target-time", s.dropTime, "--target-action", "promote")
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != s.beforeDrop {
		t.Fatalf("rows = %d, want every committed row: %d", got, s.beforeDrop)
	}
}

// copySegment copies an archived segment of c out of pg_wal, flipping its last byte
// when damage is set.
func copySegment(t *testing.T, c *pgtest.Cluster, seg string, damage bool) string {
	t.Helper()
	data, err := os.ReadFile(c.WALFile(seg))
	if err != nil {
		t.Fatal(err)
	}
	if damage {
		data[len(data)-1] ^= 0xFF
	}
	p := filepath.Join(pgtest.TempDir(t), seg)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A key rotation without a new repository: writers get the new recipient (the MAC key
// stays); new WAL and backups are encrypted for it; pgb status, run on the writer
// without any identity, names both sets; a reader holding only the new identity cannot
// read what the old one guards, and one holding both restores to before the rotation.
func TestKeyRotationKeepsOldBackupsReadableWithTheOldIdentity(t *testing.T) {
	pgtest.RequireParallel(t)
	a, b := keygen(t), keygen(t)
	repo := newRepo(t)
	writer := configFile(t, "")
	conf := writer[1]
	writeConf := func(k keys) {
		t.Helper()
		body := "repo: " + repo + "\nencryption: age\nencryption-recipients: " + k.recipient + "\nencryption-mac-key: " + a.macKey + "\n"
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		pgtest.ChownToPG(t, conf)
	}
	writeConf(a)
	c := archivingClusterWith(t, writer)
	c.Exec(t, "CREATE TABLE t (id int)")
	c.Exec(t, "INSERT INTO t SELECT generate_series(1, 100)")
	mustPGB(t, "", c.Env(), "backup-push", "--config", conf, "--fast")
	c.Exec(t, "INSERT INTO t SELECT generate_series(101, 200)")
	before := c.QueryString(t, "SELECT clock_timestamp()")
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)

	writeConf(b) // the rotation: archive_command reads the file at each call
	c.WaitFor(t, "the server clock to pass "+before, 10*time.Second, func() (bool, string, error) {
		later, err := c.TryQueryString("SELECT clock_timestamp() > $1::timestamptz", before)
		return later == "t", later, err
	})
	c.Exec(t, "INSERT INTO t SELECT generate_series(201, 300)")
	mustPGB(t, "", c.Env(), "backup-push", "--config", conf, "--fast")
	c.Exec(t, "INSERT INTO t SELECT generate_series(301, 400)")
	c.WaitArchived(t, c.SwitchWAL(t), 30*time.Second)

	var st struct {
		Backups []struct {
			RecipientSet string `json:"recipient_set"`
		} `json:"backups"`
		Encryption struct {
			RecipientSets []struct {
				ID         string   `json:"id"`
				Recipients []string `json:"recipients"`
			} `json:"recipient_sets"`
			WAL []struct {
				RecipientSet string `json:"recipient_set"`
			} `json:"wal_samples"`
		} `json:"encryption"`
	}
	out := mustPGB(t, "", nil, "status", "--config", conf, "--json")
	if err := json.Unmarshal([]byte(out.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	sets := st.Encryption.RecipientSets
	if len(sets) == 2 && sets[0].Recipients[0] == b.recipient { // first used within one second: either order
		sets[0], sets[1] = sets[1], sets[0]
	}
	if len(sets) != 2 || len(st.Backups) != 2 || sets[0].Recipients[0] != a.recipient || sets[1].Recipients[0] != b.recipient {
		t.Fatalf("status: %+v", st)
	}
	if st.Backups[0].RecipientSet != sets[0].ID || st.Backups[1].RecipientSet != sets[1].ID {
		t.Fatalf("backups written for %+v, want %s then %s", st.Backups, sets[0].ID, sets[1].ID)
	}
	if w := st.Encryption.WAL; len(w) != 2 || w[0].RecipientSet != sets[0].ID || w[1].RecipientSet != sets[1].ID {
		t.Fatalf("WAL samples %+v, want the oldest for %s and the newest for %s", w, sets[0].ID, sets[1].ID)
	}
	text := mustPGB(t, "", nil, "status", "--config", conf).stdout
	if !strings.Contains(text, a.recipient) || !strings.Contains(text, b.recipient) || !strings.Contains(text, "encrypted for "+sets[0].ID) {
		t.Fatalf("status text does not name both recipient sets:\n%s", text)
	}

	// Only the new identity: the old backup and WAL are unreadable, and verify says so.
	onlyNew := configFile(t, "repo: "+repo+"\nencryption-identity-file: "+b.identity+"\n")
	r := pgb(t, "", nil, append(onlyNew[:2:2], "verify", "--wal")...)
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "other recipients") {
		t.Fatalf("verify with only the new identity: %s", r)
	}
	// Both identities in one file: everything verifies, and a restore to before the
	// rotation reads the old backup and the old WAL.
	both := filepath.Join(pgtest.TempDir(t), "both.txt")
	ia, err := os.ReadFile(a.identity)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := os.ReadFile(b.identity)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(both, append(ib, ia...), 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.ChownToPG(t, both)
	reader := configFile(t, "repo: "+repo+"\nencryption-identity-file: "+both+"\n")
	mustPGB(t, "", nil, append(reader[:2:2], "verify", "--wal")...)
	dir := filepath.Join(pgtest.TempDir(t), "restored")
	mustPGB(t, "", nil, append(reader[:2:2], "restore", "--pgdata", dir, "--target-time", before, "--target-action", "promote")...)
	rc := pgtest.OpenDataDir(t, dir, pgtest.Options{Conf: []string{"archive_mode = off"}})
	rc.Start(t)
	rc.WaitRecoveryDone(t, 60*time.Second)
	if got := rc.QueryInt(t, "SELECT count(*) FROM t"); got != 200 {
		t.Fatalf("rows before the rotation = %d, want 200", got)
	}
}

// Passphrase mode, the one-secret setup: the same config file archives, backs up and
// restores; the repository holds its key sealed with the passphrase, and nothing in
// the clear.
func TestPassphraseEncryptedRepositoryRestoresToJustBeforeTheDrop(t *testing.T) {
	pgtest.RequireParallel(t)
	repo := newRepo(t)
	conf := configFile(t, "repo: "+repo+"\ncompression: none\nencryption: age\nencryption-passphrase: 'correct horse battery staple'\n")
	s := newScenarioOn(t, repo, conf)
	if _, err := os.Stat(filepath.Join(repo, "encryption", "passphrase-1.age")); err != nil {
		t.Fatalf("no passphrase key in the repository: %v", err)
	}
	for _, rel := range repoFiles(t, repo) {
		if strings.HasPrefix(rel, "wal/") && !strings.Contains(filepath.Base(rel), ".") {
			b, err := os.ReadFile(filepath.Join(repo, rel))
			if err != nil {
				t.Fatal(err)
			}
			if b[6] != 1 {
				t.Fatalf("%s is not encrypted", rel)
			}
		}
	}
	wrong := configFile(t, "repo: "+repo+"\nencryption-passphrase: 'not the passphrase at all'\n")
	target := filepath.Join(pgtest.TempDir(t), "wrong")
	if r := pgb(t, "", nil, append(wrong[:2:2], "restore", "--pgdata", target)...); r.code == 0 || !strings.Contains(r.stderr, "opens none") {
		t.Fatalf("restore with a wrong passphrase: %s", r)
	}
	c := s.restore(t, "--target-time", s.dropTime, "--target-action", "promote")
	c.WaitRecoveryDone(t, 60*time.Second)
	if got := c.QueryInt(t, "SELECT count(*) FROM ticks"); got != s.beforeDrop {
		t.Fatalf("rows = %d, want every committed row: %d", got, s.beforeDrop)
	}
}

// withEncryption adds age encryption, writing and reading, to the config file sel
// names.
func withEncryption(t *testing.T, sel []string) []string {
	t.Helper()
	k := keygen(t)
	f, err := os.OpenFile(sel[1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("encryption: age\nencryption-recipients: " + k.recipient + "\nencryption-mac-key: " + k.macKey +
		"\nencryption-identity-file: " + k.identity + "\n"); err != nil {
		t.Fatal(err)
	}
	return sel
}

// Encrypted objects read through a store that breaks requests mid-body: resumed reads
// continue the ciphertext where they broke off, and every row comes back.
func TestEncryptedPITROnS3UnderTransientFaults(t *testing.T) {
	sel, _, proxy := s3RepoBehind(t, 0.15, "")
	pitrOn(t, withEncryption(t, sel))
	assertFaulted(t, proxy)
}

func TestEncryptedPITROnGCS(t *testing.T) {
	pitrOn(t, withEncryption(t, gcsRepo(t, 0)))
}
