package cmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/config"
)

// Several repositories (repos): every command works on the repositories --repo
// selects (all of them by default) through one of these, composed here so that the
// commands themselves work on one repository as they always did:
//   - each: in turn, under a heading naming each (backup-list, status, verify, delete,
//     check, drill, restore-point list; backup-push, which copies its backup from the
//     first into the others);
//   - one: exactly one, named by --repo (backup-mark, rotate-passphrase);
//   - first: the first selected (events, extract);
//   - wal-push stores in all at once, wal-fetch tries them in order, restore picks the
//     one whose backup is newest, restore-point records one point in each (their own
//     files).

// forRepo is e working on the repository r of repos.
func (e *env) forRepo(r config.Repository) *env {
	return &env{cfg: e.cfg.For(r), log: e.log.With("repo", r.Name), stdout: e.stdout, stderr: e.stderr,
		wrapStore: e.wrapStore, spawn: e.spawn}
}

// one is e working on its one repository: e itself with repo, or the one --repo names
// among repos. Several selected is a usage error naming them.
func (e *env) one(c *cli.Context) (*env, error) {
	switch {
	case !e.cfg.Multi():
		return e, nil
	case len(e.cfg.Selected) == 1:
		return e.forRepo(e.cfg.Selected[0]), nil
	}
	return nil, usagef("%s works on one repository: give --repo with one of %s", c.Command.FullName(), strings.Join(e.cfg.RepoNames(), ", "))
}

// selected is e for each repository selected: e itself without repos.
func (e *env) selected() []*env {
	if !e.cfg.Multi() {
		return []*env{e}
	}
	envs := make([]*env, 0, len(e.cfg.Selected))
	for _, r := range e.cfg.Selected {
		envs = append(envs, e.forRepo(r))
	}
	return envs
}

// first is e working on its one repository, or the first one selected of repos
// (events and extract read the same WAL and backups from any).
func (e *env) first() *env {
	if !e.cfg.Multi() {
		return e
	}
	return e.forRepo(e.cfg.Selected[0])
}

// ownRepo is how restore_command's --repo names e's repository alone: its name among
// repos, or its URL.
func (e *env) ownRepo() string {
	if e.cfg.RepoName != "" {
		return e.cfg.RepoName
	}
	return e.cfg.Repo
}

// perRepoFile is the file path names for e's repository: with repos, the repository's
// name goes before the extension (pgb.prom becomes pgb.offsite.prom), so that a
// command run on each repository writes a file for each, beside the others, rather
// than one file that the last repository overwrites.
func (e *env) perRepoFile(path string) string {
	if path == "" || e.cfg.RepoName == "" {
		return path
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "." + e.cfg.RepoName + ext
}

// repoResult is one repository's part of the JSON document each prints.
type repoResult struct {
	Name     string          `json:"name"`
	Repo     string          `json:"repo"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
	ExitCode int             `json:"exit_code"`
}

// each runs fn on every repository the command works on: on e itself with one
// repository (repo); with several (repos), on each one --repo selects, in turn, every
// one even when another failed, under a line "== repository NAME (URL)"; with --json
// their documents go into one: {"repositories": [{"name", "repo", "result" or
// "error", "exit_code"}]}. The error names each repository that failed; the exit
// status is the first failure's.
func (e *env) each(c *cli.Context, fn func(*env) error) error {
	return e.eachThen(c, fn, nil)
}

// eachThen is each, then, with several repositories, what summary says of them all
// (if not nil): its text under a line "== all repositories", or its value as
// "combined" in the --json document.
func (e *env) eachThen(c *cli.Context, fn func(*env) error, summary func() (text string, v any)) error {
	if !e.cfg.Multi() {
		return fn(e)
	}
	asJSON := hasFlag(c, "json") && c.Bool("json")
	var results []repoResult
	var errs []error
	for i, r := range e.cfg.Selected {
		child := e.forRepo(r)
		var buf bytes.Buffer
		if asJSON {
			child.stdout = &buf
		} else {
			if i > 0 {
				_, _ = fmt.Fprintln(e.stdout)
			}
			_, _ = fmt.Fprintf(e.stdout, "== repository %s (%s)\n", r.Name, r.Repo)
		}
		err := fn(child)
		switch {
		case errors.Is(err, errSilent):
			// Reported already: a line of its own must not silence another repository's.
			errs = append(errs, withCode(exitCode(err, nopWriter{}, ""), fmt.Errorf("repository %s failed (see above)", r.Name)))
		case err != nil:
			errs = append(errs, fmt.Errorf("repository %s: %w", r.Name, err))
		}
		if asJSON {
			res := repoResult{Name: r.Name, Repo: r.Repo, ExitCode: exitCode(err, nopWriter{}, "")}
			if b := bytes.TrimSpace(buf.Bytes()); json.Valid(b) && len(b) > 0 {
				res.Result = b
			}
			if err != nil && !errors.Is(err, errSilent) {
				res.Error = oneLine(err.Error())
			}
			results = append(results, res)
		}
	}
	doc := map[string]any{"repositories": results}
	if summary != nil {
		text, v := summary()
		if !asJSON {
			_, _ = fmt.Fprintf(e.stdout, "\n== all repositories\n%s", text)
		}
		doc["combined"] = v
	}
	if asJSON {
		if err := e.printJSON(doc); err != nil {
			return err
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return withCode(exitCode(errs[0], nopWriter{}, ""), errors.Join(errs...)) // the first failure's exit status
}

// nopWriter discards what is written to it.
type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
