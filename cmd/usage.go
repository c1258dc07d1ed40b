package cmd

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// Usage errors are the mistakes in how pgb was called: an unknown command or flag, a
// missing argument or value, a bad setting. They exit with exitUsage, above 125: pgb
// cannot know whether it runs as restore_command, where PostgreSQL reads 1..125 as "not
// in the archive", ends recovery and promotes with committed transactions missing. They
// print one line, never the help text (archive_command output goes to the server log on
// every retry).

// placeFlags moves the flags written before the command name to just after it (after
// the subcommand, if any), so that `pgb --config F wal-fetch %f %p` means what it says.
// Flags after the command come later on the command line and so win. args[0] is the
// program name. Unknown flags and commands are usage errors naming the mistake.
func placeFlags(app *cli.App, args []string) ([]string, error) {
	if len(args) < 2 {
		return args, nil
	}
	known := allFlags(app.Commands)
	var pre []string
	i := 1
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "help", "h":
			return args, nil // urfave/cli handles them
		case "version", "v":
			if len(args) != 2 || hasValue {
				return nil, usagef("%s takes no value and no other argument: pgb --version", a)
			}
			return []string{args[0], "version"}, nil // pgb --version: the version command
		}
		takesValue, ok := known[name]
		if !ok {
			return nil, usagef("unknown flag %s%s; see pgb --help", "--"+name, didYouMean("--", name, keys(known)))
		}
		pre = append(pre, a)
		if takesValue && !hasValue {
			if i+1 >= len(args) {
				return nil, usagef("flag --%s needs a value", name)
			}
			i++
			pre = append(pre, args[i])
		}
	}
	if i >= len(args) || args[i] == "--" || args[i] == "-" {
		if len(pre) == 0 {
			return args, nil
		}
		return nil, usagef("no command after %s; see pgb --help for the commands", strings.Join(pre, " "))
	}
	cmd := findCommand(app.Commands, args[i])
	if cmd == nil {
		if args[i] == "help" {
			return args, nil
		}
		return nil, usagef("unknown command %q%s; the commands are %s (see pgb --help)",
			args[i], didYouMean("", args[i], commandNames(app.Commands)), strings.Join(commandNames(app.Commands), ", "))
	}
	end := i + 1
	for end < len(args) {
		sub := findCommand(cmd.Subcommands, args[end])
		if sub == nil {
			break
		}
		cmd, end = sub, end+1
	}
	out := append([]string{args[0]}, args[i:end]...)
	out = append(out, pre...)
	return append(out, args[end:]...), nil
}

// allFlags maps every flag name of every command to whether it takes a value.
func allFlags(cmds []*cli.Command) map[string]bool {
	out := map[string]bool{}
	for _, c := range cmds {
		for n, v := range allFlags(c.Subcommands) {
			out[n] = v
		}
		for _, f := range c.Flags {
			tv := true
			if f, ok := f.(interface{ TakesValue() bool }); ok {
				tv = f.TakesValue()
			}
			for _, n := range f.Names() {
				out[n] = tv
			}
		}
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

func commandNames(cmds []*cli.Command) []string {
	var out []string
	for _, c := range cmds {
		if !c.Hidden {
			out = append(out, c.Name)
		}
	}
	return out
}

// onUsageError makes urfave/cli's parse errors of command c one line naming the
// mistake; it replaces the help text urfave/cli would print.
func onUsageError(path string, c *cli.Command) cli.OnUsageErrorFunc {
	help, of := "pgb "+path+" --help", " for "+path
	if path == "" {
		help, of = "pgb --help", ""
	}
	return func(_ *cli.Context, err error, _ bool) error {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
			name = strings.TrimLeft(name, "-")
			var names []string
			for _, f := range c.Flags {
				names = append(names, f.Names()...)
			}
			return usagef("unknown flag --%s%s%s; see %s", name, of, didYouMean("--", name, names), help)
		}
		if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
			return usagef("flag --%s%s needs a value", strings.TrimLeft(name, "-"), strings.Replace(of, " for ", " of ", 1))
		}
		return usagef("%s; see %s", strings.ReplaceAll(msg, " -", " --"), help)
	}
}

// setUsageErrors installs onUsageError on every command and subcommand.
func setUsageErrors(prefix string, cmds []*cli.Command) {
	for _, c := range cmds {
		path := strings.TrimSpace(prefix + " " + c.Name)
		if c.OnUsageError == nil {
			c.OnUsageError = onUsageError(path, c)
		}
		setUsageErrors(path, c.Subcommands)
	}
}

// didYouMean suggests the closest of candidates to name, if one is close enough: a
// few typing mistakes, or name is the start of it.
func didYouMean(prefix, name string, candidates []string) string {
	limit := max(1, min(3, len(name)/3))
	best, bestD := "", limit+1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(name), strings.ToLower(c))
		if len(name) >= 3 && strings.HasPrefix(c, name) {
			d = min(d, limit)
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s%s?)", prefix, best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
