package statushtml

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgb-project/pgb/internal/status"
	"github.com/pgb-project/pgb/internal/testenv"
	"github.com/pgb-project/pgb/internal/window"
)

var now = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// sample: two windows cut by a gap, a full and an incremental backup on timeline 1, a
// backup on timeline 2 (after a promotion), a restore point, drills, and a hostile
// backup name. The newest backup ends hours before the last archived commit.
func sample() *status.Report {
	return &status.Report{
		Repository: "s3://bucket/<db>",
		Time:       now,
		Windows: []*window.Window{
			{Backup: "b1", Start: window.Point{Time: now.Add(-70 * time.Hour)}, LastCommit: &window.Commit{Xid: 700, Time: now.Add(-50 * time.Hour)}},
			{Backup: "b3", Start: window.Point{Time: now.Add(-40 * time.Hour)}, LastCommit: &window.Commit{Xid: 900, Time: now.Add(-4 * time.Hour)}},
		},
		Backups: []status.Backup{
			{Name: "b1", Timeline: 1, StartTime: now.Add(-71 * time.Hour), StopTime: now.Add(-70 * time.Hour), Usable: true, Permanent: true},
			{Name: "b2", Timeline: 1, StartTime: now.Add(-61 * time.Hour), StopTime: now.Add(-60 * time.Hour), Usable: true, Parent: "b1"},
			{Name: "b3<script>alert(1)</script>", Timeline: 2, StartTime: now.Add(-41 * time.Hour), StopTime: now.Add(-40 * time.Hour), Usable: true},
		},
		RestorePoints: []status.RestorePoint{{Name: "before_release", Timeline: 2, Time: now.Add(-20 * time.Hour), Reachable: true}},
		Drills: &status.Drills{
			LastSuccess: &status.Drill{Finished: now.Add(-30 * time.Hour), Backup: "b3", RTOSeconds: 95},
			LastFailed:  &status.Drill{Finished: now.Add(-10 * time.Hour), Backup: "b3", Error: "check failed"},
		},
		NewestWAL: &status.NewestWAL{Stored: now.Add(-4 * time.Hour), AgeSeconds: 4 * 3600},
		Verifies: &status.Verifies{
			Last:        &status.Verify{Finished: now.Add(-2 * time.Hour), Problems: 2, Scope: "backups and WAL"},
			LastSuccess: &status.Verify{Finished: now.Add(-26 * time.Hour), OK: true, Scope: "backups and WAL"},
		},
	}
}

func render(t *testing.T, r ...*status.Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, Page{Reports: r, Now: now, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestThePageSaysTheLatestRecoverablePointInWords(t *testing.T) {
	page := render(t, sample())
	for _, want := range []string{
		"Recoverable: any point from 2026-12-01 14:00:00.000 UTC to 2026-12-04 08:00:00.000 UTC.",
		"The latest recoverable point is the last archived commit, 2026-12-04 08:00:00.000 UTC (xid 900).",
		"1 gaps cut the window",
		"it is not the latest recoverable point",
		"restore point before_release at 2026-12-03 16:00:00.000 UTC (reachable)",
		"drill FAILED: check failed",
		"verify FAILED: 2 problem(s) in backups and WAL",
		"The last pgb verify (2026-12-04 10:00:00.000 UTC) FAILED",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not say %q", want)
		}
	}
	if strings.Contains(page, "<script>alert") || !strings.Contains(page, "b3&lt;script&gt;") {
		t.Error("a backup's name is not escaped")
	}
	// Self-contained: nothing is loaded from anywhere.
	if m := regexp.MustCompile(`(?i)(src|href)\s*=|url\(|@import|<script`).FindString(page); m != "" {
		t.Errorf("the page loads something: %q", m)
	}
	if empty := render(t, &status.Report{Repository: "/r", Time: now}); !strings.Contains(empty, "Nothing is recoverable") {
		t.Error("an empty repository's page does not say that nothing is recoverable")
	}
}

// Hostile input cannot make the page grow without bound.
func TestManyMarksAreBounded(t *testing.T) {
	r := &status.Report{Repository: "/r", Time: now}
	for i := 0; i < 3*maxPoints; i++ {
		r.RestorePoints = append(r.RestorePoints, status.RestorePoint{Name: "p", Timeline: 1, Time: now.Add(-time.Duration(i) * time.Minute)})
	}
	page := render(t, r)
	if n := strings.Count(page, "<circle"); n > maxPoints {
		t.Errorf("%d marks drawn, at most %d", n, maxPoints)
	}
}

// chromium returns Debian's chromium, or skips (fails under CI, where .ci/run installs it).
func chromium(t *testing.T) string {
	t.Helper()
	testenv.SkipIfShort(t, "starts Chromium")
	p, err := exec.LookPath("chromium")
	if err != nil {
		testenv.SkipOrFail(t, "chromium is not installed (apt-get install chromium; .ci/run installs it)")
	}
	return p
}

// shoot renders file in headless Chromium and returns the screenshot and the console
// messages Chromium logged.
func shoot(t *testing.T, bin, file string) (image.Image, []string) {
	t.Helper()
	dir := t.TempDir()
	shot := filepath.Join(dir, "shot.png")
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--force-device-scale-factor=1", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--enable-logging=stderr", "--v=0", "--window-size=1200,1400", "--screenshot="+shot, "file://"+file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	var console []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "CONSOLE") || strings.Contains(l, "Uncaught") || strings.Contains(l, "Content Security Policy") {
			console = append(console, l)
		}
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img, console
}

func hex(s string) color.RGBA {
	var c color.RGBA
	for i, p := range []*uint8{&c.R, &c.G, &c.B} {
		v := 0
		for _, ch := range s[1+2*i : 3+2*i] {
			v = v*16 + strings.IndexRune("0123456789abcdef", ch)
		}
		*p = uint8(v)
	}
	c.A = 255
	return c
}

// columns returns the coordinates of the pixels of colour c.
func columns(img image.Image, c color.RGBA) (xs []int, ys []int) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(bl>>8) == c.B {
				xs, ys = append(xs, x), append(ys, y)
			}
		}
	}
	return xs, ys
}

func mostCommon(v []int) int {
	n := map[int]int{}
	best := v[0]
	for _, x := range v {
		n[x]++
		if n[x] > n[best] {
			best = x
		}
	}
	return best
}

func minMax(v []int) (lo, hi int) {
	lo, hi = v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// The page renders in Chromium without a console message, and the picture is right:
// the window's green bars end where the last archived commit's line is drawn, at the
// commit's place on the axis, to the right of the newest backup; a gap is drawn in red
// between the windows.
func TestChromiumDrawsTheWindowEndingAtTheLastArchivedCommit(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "status.html")
	if err := os.WriteFile(file, []byte(render(t, sample())), 0o644); err != nil {
		t.Fatal(err)
	}
	img, console := shoot(t, bin, file)
	if len(console) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(console, "\n"))
	}
	gx, gy := columns(img, hex(ColorWindow))
	bx, by := columns(img, hex(ColorLastCommit))
	rx, ry := columns(img, hex(ColorGap))
	if len(gx) == 0 || len(bx) == 0 || len(rx) == 0 {
		t.Fatalf("the screenshot has no window (%d px), last-commit line (%d px) or gap (%d px)", len(gx), len(bx), len(rx))
	}
	// The last commit's line: the column with the most of its colour (the legend's
	// swatch is 12 px high, the line crosses every lane), and its rows.
	line := mostCommon(bx)
	var lineRows []int
	for i := range bx {
		if bx[i] == line {
			lineRows = append(lineRows, by[i])
		}
	}
	lineTop, lineBottom := minMax(lineRows)
	if lineBottom-lineTop < 3*LaneH {
		t.Fatalf("the last commit's line is %d px high: it does not cross the lanes", lineBottom-lineTop)
	}
	// The window's bars: the rows with the most window colour (the summary's border,
	// the swatch and a drill's dot are narrow).
	barRow := mostCommon(gy)
	var wx []int
	for i := range gx {
		if gy[i] == barRow {
			wx = append(wx, gx[i])
		}
	}
	winLeft, winRight := minMax(wx)
	if d := winRight - line; d < -2 || d > 2 {
		t.Errorf("the window's bar ends at x=%d, the last archived commit's line is at x=%d", winRight, line)
	}
	// The gap: red in the bar's row, between the windows.
	var gapX []int
	for i := range rx {
		if ry[i] == barRow {
			gapX = append(gapX, rx[i])
		}
	}
	if len(gapX) == 0 {
		t.Fatal("no gap drawn in the window's lane")
	}
	if gapLeft, gapRight := minMax(gapX); gapLeft <= winLeft || gapRight >= winRight {
		t.Errorf("the gap is drawn from x=%d to %d, not inside the window's span %d..%d", gapLeft, gapRight, winLeft, winRight)
	}
	// Scale: the window spans 70 h - 4 h of an axis from (now - 71 h - margin) to now.
	s := sample()
	from := s.Backups[0].StartTime
	span := now.Sub(from)
	from = from.Add(-span / 50)
	pxPerSec := float64(PlotWidth) / now.Sub(from).Seconds()
	want := pxPerSec * s.Windows[1].LastCommit.Time.Sub(s.Windows[0].Start.Time).Seconds()
	if got := float64(winRight - winLeft); got < want-4 || got > want+4 { // the edges are blended
		t.Errorf("the window is drawn %.0f px wide, want %.0f (its time span on the axis)", got, want)
	}
	// The newest backup (dark grey, full) ends well left of the line.
	kx, ky := columns(img, hex("#555555"))
	// A backup's bar is LaneH-12 px high; text drawn in the same grey is not.
	perColumn := map[int]int{}
	for i := range kx {
		if ky[i] > lineTop && ky[i] < lineBottom {
			perColumn[kx[i]]++
		}
	}
	var backups []int
	for x, n := range perColumn {
		if n >= LaneH/2 {
			backups = append(backups, x)
		}
	}
	if len(backups) == 0 {
		t.Fatal("no full backup drawn")
	}
	if _, right := minMax(backups); right >= line-PlotWidth/10 {
		t.Errorf("the newest backup is drawn up to x=%d, near or right of the last archived commit (x=%d)", right, line)
	}
}

// The console check itself works: a page that tries to load an image is refused by
// its Content-Security-Policy, and Chromium says so.
func TestChromiumConsoleCheckSeesAnError(t *testing.T) {
	bin := chromium(t)
	page := strings.Replace(render(t, sample()), "</body>", `<img src="http://127.0.0.1:1/x.png"></body>`, 1)
	file := filepath.Join(t.TempDir(), "bad.html")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, console := shoot(t, bin, file); len(console) == 0 {
		t.Error("a page loading an image gave no console message: the check cannot see errors")
	}
}

// A window whose last commit was not found is drawn and said to reach "at least" where
// restore's check ends it, never called the last archived commit; a repository that could
// not be read has a section saying so.
func TestAnUnknownEndIsALowerBoundAndAnUnreadableRepositoryIsNamed(t *testing.T) {
	r := &status.Report{Repository: "/r", Time: now,
		Windows: []*window.Window{{Backup: "b1", Start: window.Point{Time: now.Add(-48 * time.Hour)}, Backups: []string{"b1", "b2"}, NoCommitIn: 64, NoCommitBefore: "000000010000000000000040"}},
		Backups: []status.Backup{
			{Name: "b1", Timeline: 1, StartTime: now.Add(-49 * time.Hour), StopTime: now.Add(-48 * time.Hour), Usable: true},
			{Name: "b2", Timeline: 1, StartTime: now.Add(-2 * time.Hour), StopTime: now.Add(-time.Hour), Usable: true},
		}}
	var b bytes.Buffer
	if err := Write(&b, Page{Reports: []*status.Report{r}, Failed: []Failure{{Repository: "s3://gone/x", Err: "access denied"}}, Now: now}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		"to at least 2026-12-02 12:00:00.000 UTC: the last archived commit was not found",
		"recoverable to at least 12-02 12:00:00",
		"s3://gone/x", "This repository could not be read: access denied",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not say %q", want)
		}
	}
	if strings.Contains(page, "The latest recoverable point is the last archived commit") {
		t.Error("the page calls a lower bound the last archived commit")
	}
}

// Thousands of timelines (a hostile repository) draw at most maxLanes lanes.
func TestManyTimelinesAreBounded(t *testing.T) {
	r := &status.Report{Repository: "/r", Time: now}
	for i := 1; i <= 500; i++ {
		r.RestorePoints = append(r.RestorePoints, status.RestorePoint{Name: "p", Timeline: uint32(i), Time: now.Add(-time.Hour)})
	}
	page := render(t, r)
	if n := strings.Count(page, ">timeline "); n > maxLanes {
		t.Errorf("%d timelines drawn, at most %d", n, maxLanes)
	}
	if !strings.Contains(page, "450 more timelines") {
		t.Error("the page does not say that timelines were left out")
	}
}
