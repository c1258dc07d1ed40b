package integration

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/integration/pgtest"
)

// background is a pgb running while the test acts on it: its stdout is collected,
// its stderr read line by line as it comes (so pgb never blocks on a full pipe).
type background struct {
	cmd   *exec.Cmd
	out   bytes.Buffer
	lines chan string
	seen  []string // the stderr lines read so far
}

// startPGBReading starts pgb with args, env added to a clean environment.
func startPGBReading(t *testing.T, env []string, args ...string) *background {
	t.Helper()
	b := &background{cmd: exec.Command(pgtest.BuildPGB(t), args...), lines: make(chan string, 1024)}
	b.cmd.Env = append(cleanEnv(), env...)
	b.cmd.Stdout = &b.out
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(b.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.lines <- sc.Text()
		}
	}()
	return b
}

// until reads stderr up to the first line containing marker and returns it; when
// pgb's stderr ends first, it kills pgb and fails the test saying what it waited for.
// A pgb that says nothing of the kind within untilLimit is killed, so that a test
// fails with what it said instead of hanging.
func (b *background) until(t *testing.T, marker, what string) string {
	t.Helper()
	limit := time.AfterFunc(untilLimit, func() { _ = b.cmd.Process.Kill() })
	defer limit.Stop()
	for l := range b.lines {
		b.seen = append(b.seen, l)
		if strings.Contains(l, marker) {
			return l
		}
	}
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
	t.Fatalf("pgb never said %s (killed after %s at the latest):\n%s", what, untilLimit, strings.Join(b.seen, "\n"))
	return ""
}

// untilLimit bounds how long until waits for a line.
const untilLimit = 3 * time.Minute

// wait reads the rest of stderr, waits for pgb to exit and returns the whole of its
// stderr and how it ended.
func (b *background) wait() (string, error) {
	for l := range b.lines {
		b.seen = append(b.seen, l)
	}
	err := b.cmd.Wait()
	return strings.Join(b.seen, "\n"), err
}
