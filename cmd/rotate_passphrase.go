package cmd

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

func rotatePassphraseCommand() *cli.Command {
	return &cli.Command{
		Name:  "rotate-passphrase",
		Usage: "seal the repository's key with a new encryption passphrase (passphrase mode)",
		Description: "Opens the repository's passphrase key with encryption-passphrase and stores its next\n" +
			"generation, sealed with the new passphrase (from --new-passphrase-file or\n" +
			"PGB_NEW_ENCRYPTION_PASSPHRASE, never a flag): a new identity and MAC key, with every older\n" +
			"identity, so that the new passphrase reads everything written before. Then give every host\n" +
			"the new passphrase: writers encrypt to the new key from their next start; the old passphrase\n" +
			"still opens the old generation (and what was written with it) until that is removed by hand.",
		Flags: append(flags(), &cli.StringFlag{Name: "new-passphrase-file", Usage: "read the new passphrase from `FILE` (its first line)"}),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			e, err := e.one(c)
			if err != nil {
				return err
			}
			return e.rotatePassphrase(c)
		}),
	}
}

func (e *env) rotatePassphrase(c *cli.Context) error {
	if e.cfg.Encryption.Passphrase == "" {
		return usageError{errors.New("rotate-passphrase needs the current encryption-passphrase (PGB_ENCRYPTION_PASSPHRASE or the config file)")}
	}
	fresh := os.Getenv("PGB_NEW_ENCRYPTION_PASSPHRASE")
	if p := c.String("new-passphrase-file"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return usageError{fmt.Errorf("new passphrase: %w", err)}
		}
		fresh, _, _ = strings.Cut(string(b), "\n")
	}
	fresh = strings.TrimSpace(fresh)
	switch fresh {
	case "":
		return usageError{errors.New("no new passphrase: set PGB_NEW_ENCRYPTION_PASSPHRASE or --new-passphrase-file")}
	case e.cfg.Encryption.Passphrase:
		return usageError{errors.New("the new passphrase is the current one")}
	}
	rp, err := e.openRepo(c.Context, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // the new generation is durable once RotatePassphrase returns
	n, err := rp.RotatePassphrase(c.Context, fresh)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "stored generation %d of the passphrase key: give every host the new passphrase\n", n)
	return err
}
