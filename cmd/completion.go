package cmd

import (
	"io"
	"sort"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/clidoc"
)

// allCommands describes every visible command with its flags. The app running this
// command dropped the other commands' flags (keepFlagsOf), so it builds a fresh one.
func allCommands() []clidoc.Command { return describeCommands(fullApp()) }

// fullApp is pgb's app with every command's flags.
func fullApp() *cli.App { return newApp(Build{}, io.Discard, io.Discard) }

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
			app := fullApp()
			return clidoc.Man(c.App.Writer, clidoc.Page{
				Name: "pgb", Section: 1, Date: c.String("date"), Version: c.App.Version,
				Summary: app.Usage, Description: app.Description,
				Sections: []clidoc.Section{
					{Title: "Files", Body: "/etc/pgb/pgb.yaml  the configuration file (PGB_CONFIG, --config); the packages install a commented example\n" +
						"/lib/systemd/system/pgb-backup.timer  nightly backup-push, then delete (retention)\n" +
						"/lib/systemd/system/pgb-drill.timer  weekly restore drill\n" +
						"/lib/systemd/system/pgb-wal-stream.service  WAL streaming (RPO 0 with --synchronous)\n" +
						"/lib/systemd/system/pgb-metrics.service  Prometheus metrics on 127.0.0.1:9863\n" +
						"/usr/share/doc/pgb/prometheus-alerts.yaml  example alert rules (docs/metrics.md)"},
					{Title: "See also", Body: "postgres(1), pg_basebackup(1), pgbackrest(1)\n" +
						"/usr/share/doc/pgb/ : README.md, docs/runbook.md (what to do when the database is gone), docs/*.md"},
				},
			}, describeCommands(app))
		},
	}
}

// describeCommands lists the visible commands of app with their flags, in app's order.
func describeCommands(app *cli.App) []clidoc.Command {
	var out []clidoc.Command
	for _, c := range app.Commands {
		if c.Hidden {
			continue
		}
		cmd := clidoc.Command{Name: c.Name, Usage: c.Usage, ArgsUsage: c.ArgsUsage, Description: c.Description}
		for _, f := range c.Flags {
			names := f.Names()
			if len(names) == 0 {
				continue
			}
			fl := clidoc.Flag{Name: names[0], Aliases: names[1:]}
			if d, ok := f.(cli.DocGenerationFlag); ok {
				fl.TakesValue = d.TakesValue()
				fl.Usage = d.GetUsage()
				fl.Env = d.GetEnvVars()
				fl.Default = d.GetDefaultText()
			}
			if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
				continue
			}
			cmd.Flags = append(cmd.Flags, fl)
		}
		sort.Slice(cmd.Flags, func(i, j int) bool { return cmd.Flags[i].Name < cmd.Flags[j].Name })
		out = append(out, cmd)
	}
	return out
}
