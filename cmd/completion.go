package cmd

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/clidoc"
)

// allCommands describes every visible command with its flags. The app running this
// command dropped the other commands' flags (keepFlagsOf), so it builds a fresh one.
func allCommands() []clidoc.Command {
	return clidoc.Describe(newApp(Build{}, io.Discard, io.Discard))
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: pgb completion bash|zsh",
		ArgsUsage: "bash|zsh",
		Description: "bash: source <(pgb completion bash), or save it as /usr/share/bash-completion/completions/pgb.\n" +
			"zsh: pgb completion zsh > \"${fpath[1]}/_pgb\", then compinit. The .deb and .rpm packages install both.",
		Action: func(c *cli.Context) error {
			if err := exactArgs(c, 1, "bash|zsh"); err != nil {
				return err
			}
			switch c.Args().First() {
			case "bash":
				return clidoc.Bash(c.App.Writer, "pgb", allCommands())
			case "zsh":
				return clidoc.Zsh(c.App.Writer, "pgb", allCommands())
			}
			return usagef("pgb completion: unknown shell %q: bash or zsh", c.Args().First())
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print pgb's man page (roff), generated from its command definitions",
		Hidden: true, // packaging runs it: man pgb
		Flags:  []cli.Flag{&cli.StringFlag{Name: "date", Usage: "the page's date (the packages pass the commit's date, for reproducible builds)"}},
		Action: func(c *cli.Context) error {
			if err := exactArgs(c, 0, "none"); err != nil {
				return err
			}
			app := newApp(Build{}, io.Discard, io.Discard)
			return clidoc.Man(c.App.Writer, clidoc.Page{
				Name: "pgb", Section: 1, Date: c.String("date"), Version: c.App.Version,
				Summary: app.Usage, Description: app.Description,
				Sections: []clidoc.Section{
					{Title: "Files", Body: "/etc/pgb/pgb.yaml  the configuration file (PGB_CONFIG, --config); the packages install a commented example\n" +
						"/lib/systemd/system/pgb-backup.timer  nightly backup-push, then delete (retention)\n" +
						"/lib/systemd/system/pgb-drill.timer  weekly restore drill\n" +
						"/lib/systemd/system/pgb-wal-stream.service  WAL streaming (RPO 0 with --synchronous)"},
					{Title: "See also", Body: "postgres(1), pg_basebackup(1), pgbackrest(1)\n" +
						"/usr/share/doc/pgb/ : README.md, docs/runbook.md (what to do when the database is gone), docs/*.md"},
				},
			}, allCommands())
		},
	}
}
