package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/crypt"
)

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "make the keys of client-side encryption: an age identity file, its recipient and a MAC key",
		ArgsUsage: "IDENTITY_FILE",
		Description: "Writes a new age identity (secret key) to IDENTITY_FILE (created with mode 0600; an existing\n" +
			"file is never overwritten) and prints the settings that go with it: the recipient (public key)\n" +
			"and a new MAC key. Writers — the database host's wal-push and backup-push — get\n" +
			"encryption: age, encryption-recipients and encryption-mac-key (a secret: put it in the config\n" +
			"file, mode 0600, or PGB_ENCRYPTION_MAC_KEY); they can then write the repository but not read\n" +
			"it. Readers — wal-fetch during a restore, restore, verify, drill — get encryption-identity-file.\n" +
			"Keep a copy of the identity away from the database host and the repository: without it the\n" +
			"backups cannot be read by anyone. To rotate, make a new identity, give writers its recipient\n" +
			"(the MAC key may stay) and append the new identity to readers' identity files, keeping the\n" +
			"old one while any object written for it is retained (pgb status lists which). --mac-key\n" +
			"prints only a new MAC key.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "mac-key", Usage: "print only a new MAC key"}},
		Action: func(c *cli.Context) error {
			if c.Bool("mac-key") {
				if err := exactArgs(c, 0, "none"); err != nil {
					return err
				}
				_, err := fmt.Fprintf(c.App.Writer, "encryption-mac-key: %s\n", crypt.NewMACKey())
				return err
			}
			if err := exactArgs(c, 1, "IDENTITY_FILE"); err != nil {
				return err
			}
			return keygen(c, c.Args().First())
		},
	}
}

func keygen(c *cli.Context, path string) error {
	id, recipient, err := crypt.Generate()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return usageError{fmt.Errorf("%s exists: pgb keygen never overwrites a key file (append a new identity to it by hand when rotating)", path)}
	}
	if err != nil {
		return usageError{fmt.Errorf("identity file: %w", err)}
	}
	_, err = fmt.Fprintf(f, "# pgb identity, created %s\n# recipient: %s\n%s\n", time.Now().UTC().Format(time.RFC3339), recipient, id)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path) // a half-written key is no key
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = fmt.Fprintf(c.App.Writer, "# identity (secret key) written to %s: readers' encryption-identity-file; keep a copy off the database host\n"+
		"# writers (wal-push, backup-push):\n"+
		"encryption: age\n"+
		"encryption-recipients: %s\n"+
		"encryption-mac-key: %s\n", path, recipient, crypt.NewMACKey())
	return err
}
