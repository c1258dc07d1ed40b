// Package statushtml draws pgb status reports as one self-contained HTML page (pgb
// status --html): a time axis with the recoverable window, the gaps that cut it, the
// last archived commit, the backups, restore points and drills of each timeline, and
// a table of the exact times. The page loads nothing (no scripts, fonts or images from
// anywhere; a Content-Security-Policy forbids it) and works offline.
//
// The picture must not let anyone read the newest backup as the newest recoverable
// point: the window's bar ends at the last archived commit, a labelled line marks it,
// and the summary above the picture says both in words.
package statushtml

import (
	"fmt"
	"html/template"
	"io"
	"sort"
	"time"

	"github.com/pgb-project/pgb/internal/status"
)

// Geometry of the drawing, in CSS pixels. The tests read the screenshot with it.
const (
	Left      = 170 // x of the axis start
	PlotWidth = 900 // width of the axis
	LaneH     = 34  // height of a lane
	TopPad    = 30  // above the first lane
	SVGWidth  = Left + PlotWidth + 40
	barH      = 16   // height of a window bar
	markerR   = 6    // radius of a drill's dot
	minBarW   = 2.0  // a window shorter than this is still drawn this wide
	maxPoints = 2000 // at most this many marks per lane: a hostile repository cannot blow the page up
	maxLanes  = 50   // and at most this many timelines drawn
)

// Colours the tests look for in the screenshot.
const (
	ColorWindow     = "#1a9641" // the recoverable window
	ColorGap        = "#d7191c" // not recoverable between two windows
	ColorLastCommit = "#2c7bb6" // the line at the last archived commit
)

// Page is what the page shows.
type Page struct {
	Reports []*status.Report
	// Failed are the repositories that could not be read: each gets a section that
	// says so, never a silent absence.
	Failed  []Failure
	Now     time.Time
	Version string
}

// Failure is a repository that could not be read, and why.
type Failure struct {
	Repository string
	Err        string
}

type mark struct {
	X, W, Y, H float64
	Class      string
	Title      string // the hover text: exact times
	Label      string
}

type lane struct {
	Name  string
	Y     float64
	Marks []mark
}

type tick struct {
	X     float64
	Label string
}

type row struct {
	Kind, Name, Timeline, From, To, Note string
}

type repoView struct {
	Repository  string
	Summary     []string
	Warnings    []string
	Lanes       []lane
	Ticks       []tick
	Height      float64
	AxisY       float64
	EndLine     *mark // the last archived commit
	NowX        float64
	Rows        []row
	Nothing     bool
	Failed      bool // could not be read: no drawing, no table
	AxisFrom    string
	AxisTo      string
	AxisFromRaw int64 // Unix milliseconds: the tests map times to pixels with them
	AxisToRaw   int64
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000 UTC") }

// scale maps times to x between from and to.
type scale struct{ from, to time.Time }

func (s scale) x(t time.Time) float64 {
	span := s.to.Sub(s.from)
	if span <= 0 {
		return Left
	}
	f := float64(t.Sub(s.from)) / float64(span)
	f = max(0, min(1, f))
	return Left + f*PlotWidth
}

func view(r *status.Report, now time.Time) repoView {
	v := repoView{Repository: r.Repository, Warnings: r.Warnings}
	// The axis: from the earliest thing shown to now.
	from := now
	see := func(t time.Time) {
		if !t.IsZero() && t.Before(from) {
			from = t
		}
	}
	for _, w := range r.Windows {
		see(w.Start.Time)
	}
	for _, b := range r.Backups {
		see(b.StartTime)
	}
	for _, p := range r.RestorePoints {
		see(p.Time)
	}
	if d := r.Drills; d != nil {
		for _, x := range []*status.Drill{d.LastSuccess, d.LastFailed} {
			if x != nil {
				see(x.Finished)
			}
		}
	}
	if span := now.Sub(from); span < time.Hour {
		from = now.Add(-time.Hour)
	} else {
		from = from.Add(-span / 50) // a margin before the first mark
	}
	sc := scale{from, now}
	v.AxisFrom, v.AxisTo = ts(from), ts(now)
	v.AxisFromRaw, v.AxisToRaw = from.UnixMilli(), now.UnixMilli()

	y := float64(TopPad)
	// Lane 1: the recoverable window(s) and the gaps between them.
	win := lane{Name: "recoverable", Y: y}
	for i, w := range r.Windows {
		wEnd, exact := r.WindowEnd(w)
		x0, x1 := sc.x(w.Start.Time), sc.x(wEnd)
		end := "last archived commit " + ts(wEnd)
		switch {
		case exact:
			end += fmt.Sprintf(" (xid %d)", w.LastCommit.Xid)
		case w.NoCommitIn > 0:
			end = fmt.Sprintf("at least %s (no commit found in the newest %d segments read; the last commit is earlier than segment %s, and later than this)", ts(wEnd), w.NoCommitIn, w.NoCommitBefore)
		case w.Unsummarised != "":
			end = fmt.Sprintf("at least %s (WAL from segment %s is encrypted and could not be read here)", ts(wEnd), w.Unsummarised)
		default:
			end = fmt.Sprintf("at least %s (no commit archived after the backup)", ts(wEnd))
		}
		win.Marks = append(win.Marks, mark{X: x0, W: max(x1-x0, minBarW), Y: y + (LaneH-barH)/2, H: barH, Class: "window",
			Title: fmt.Sprintf("recoverable from %s (backup %s consistent) to %s", ts(w.Start.Time), w.Backup, end)})
		v.Rows = append(v.Rows, row{Kind: "recoverable window", Name: "from backup " + w.Backup, From: ts(w.Start.Time), To: ts(wEnd), Note: end})
		if i+1 < len(r.Windows) {
			next := r.Windows[i+1]
			g0, g1 := x1, sc.x(next.Start.Time)
			win.Marks = append(win.Marks, mark{X: g0, W: max(g1-g0, minBarW), Y: y + (LaneH-barH)/2, H: barH, Class: "gap",
				Title: fmt.Sprintf("NOT recoverable from %s to %s: WAL missing or damaged", ts(wEnd), ts(next.Start.Time))})
			v.Rows = append(v.Rows, row{Kind: "gap", Name: "not recoverable", From: ts(wEnd), To: ts(next.Start.Time), Note: "WAL missing or damaged"})
		}
	}
	if n := len(r.Windows); n > 0 {
		last := r.Windows[n-1]
		wEnd, exact := r.WindowEnd(last)
		x := sc.x(wEnd)
		if exact {
			v.EndLine = &mark{X: x, Title: "last archived commit: " + ts(wEnd) + " — the latest point recovery reaches", Label: "last archived commit " + wEnd.UTC().Format("01-02 15:04:05")}
		} else {
			v.EndLine = &mark{X: x, Title: "recovery reaches at least " + ts(wEnd) + ": the last commit was not found", Label: "recoverable to at least " + wEnd.UTC().Format("01-02 15:04:05")}
		}
	}
	v.Lanes = append(v.Lanes, win)
	y += LaneH

	// One lane per timeline: its backups and restore points.
	tls := map[uint32]bool{}
	for _, b := range r.Backups {
		tls[b.Timeline] = true
	}
	for _, p := range r.RestorePoints {
		tls[p.Timeline] = true
	}
	var order []uint32
	for tl := range tls {
		order = append(order, tl)
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	if len(order) > maxLanes {
		v.Rows = append(v.Rows, row{Kind: "not shown", Note: fmt.Sprintf("%d more timelines, before timeline %d (pgb status lists them all)", len(order)-maxLanes, order[len(order)-maxLanes])})
		order = order[len(order)-maxLanes:] // the newest
	}
	for _, tl := range order {
		l := lane{Name: fmt.Sprintf("timeline %d", tl), Y: y}
		omitted := 0
		for _, b := range r.Backups {
			if b.Timeline != tl {
				continue
			}
			if len(l.Marks) >= maxPoints {
				omitted++
				continue
			}
			kind, class := "full backup", "full"
			if b.Parent != "" {
				kind, class = "incremental backup (on "+b.Parent+")", "incr"
			}
			if b.Permanent {
				class += " permanent"
				kind += ", permanent"
			}
			if !b.Usable {
				class += " unusable"
				kind += ", UNUSABLE: " + b.Why
			}
			x0, x1 := sc.x(b.StartTime), sc.x(b.StopTime)
			l.Marks = append(l.Marks, mark{X: x0, W: max(x1-x0, 3), Y: y + 6, H: LaneH - 12, Class: "backup " + class,
				Title: fmt.Sprintf("%s %s: %s to %s (replay starts here; it is not the latest recoverable point)", kind, b.Name, ts(b.StartTime), ts(b.StopTime))})
			v.Rows = append(v.Rows, row{Kind: kind, Name: b.Name, Timeline: fmt.Sprint(tl), From: ts(b.StartTime), To: ts(b.StopTime), Note: fmt.Sprintf("%d bytes stored", b.StoredSize)})
		}
		for _, p := range r.RestorePoints {
			if p.Timeline != tl {
				continue
			}
			if len(l.Marks) >= maxPoints {
				omitted++
				continue
			}
			reach := "reachable"
			class := "point"
			if !p.Reachable {
				reach, class = "NOT reachable", "point unreachable"
			}
			l.Marks = append(l.Marks, mark{X: sc.x(p.Time), Y: y + LaneH/2, Class: class, Title: fmt.Sprintf("restore point %s at %s (%s)", p.Name, ts(p.Time), reach)})
			v.Rows = append(v.Rows, row{Kind: "restore point", Name: p.Name, Timeline: fmt.Sprint(tl), From: ts(p.Time), Note: reach})
		}
		if omitted > 0 {
			v.Rows = append(v.Rows, row{Kind: "not shown", Timeline: fmt.Sprint(tl), Note: fmt.Sprintf("%d more backups and restore points of this timeline (pgb backup-list and pgb restore-point list show them all)", omitted)})
		}
		v.Lanes = append(v.Lanes, l)
		y += LaneH
	}

	// Drills and verifies.
	hasDrill := r.Drills != nil && (r.Drills.LastSuccess != nil || r.Drills.LastFailed != nil)
	hasVerify := r.Verifies != nil && r.Verifies.Last != nil
	if hasDrill || hasVerify {
		l := lane{Name: "drills, verify", Y: y}
		d := r.Drills
		if d == nil {
			d = &status.Drills{}
		}
		for _, x := range []*status.Drill{d.LastSuccess, d.LastFailed} {
			if x == nil {
				continue
			}
			class, what := "drill ok", fmt.Sprintf("drill passed: RTO %.0f s", x.RTOSeconds)
			if x.Error != "" {
				class, what = "drill failed", "drill FAILED: "+x.Error
			}
			l.Marks = append(l.Marks, mark{X: sc.x(x.Finished), Y: y + LaneH/2, Class: class, Title: what + ", finished " + ts(x.Finished)})
			v.Rows = append(v.Rows, row{Kind: "drill", Name: x.Backup, From: ts(x.Finished), Note: what})
		}
		if hasVerify {
			for _, x := range []*status.Verify{r.Verifies.Last, r.Verifies.LastSuccess} {
				if x == nil || (x == r.Verifies.LastSuccess && r.Verifies.Last.OK) {
					continue // the last that passed is the last: drawn once
				}
				class, what := "verify ok", "verify passed ("+x.Scope+")"
				switch {
				case x.Error != "":
					class, what = "verify failed", "verify could not finish: "+x.Error
				case !x.OK:
					class, what = "verify failed", fmt.Sprintf("verify FAILED: %d problem(s) in %s", x.Problems, x.Scope)
				}
				l.Marks = append(l.Marks, mark{X: sc.x(x.Finished) - 5, W: 10, Y: y + LaneH/2 - 5, H: 10, Class: class, Title: what + ", finished " + ts(x.Finished)})
				v.Rows = append(v.Rows, row{Kind: "verify", From: ts(x.Finished), Note: what})
			}
		}
		v.Lanes = append(v.Lanes, l)
		y += LaneH
	}
	v.AxisY = y + 4
	v.NowX = sc.x(now)
	for i := 0; i <= 5; i++ {
		t := from.Add(time.Duration(float64(now.Sub(from)) * float64(i) / 5))
		v.Ticks = append(v.Ticks, tick{X: sc.x(t), Label: t.UTC().Format("01-02 15:04")})
	}
	v.Height = y + 40

	// The summary, in words.
	if n := len(r.Windows); n == 0 {
		v.Nothing = true
		v.Summary = append(v.Summary, "Nothing is recoverable: no usable backup with the WAL it needs.")
	} else {
		last := r.Windows[n-1]
		wEnd, exact := r.WindowEnd(last)
		if exact {
			v.Summary = append(v.Summary, fmt.Sprintf("Recoverable: any point from %s to %s.", ts(r.Windows[0].Start.Time), ts(wEnd)))
			v.Summary = append(v.Summary, fmt.Sprintf("The latest recoverable point is the last archived commit, %s (xid %d).", ts(last.LastCommit.Time), last.LastCommit.Xid))
		} else {
			v.Summary = append(v.Summary, fmt.Sprintf("Recoverable: any point from %s to at least %s: the last archived commit was not found (pgb status says why).", ts(r.Windows[0].Start.Time), ts(wEnd)))
		}
		if n > 1 {
			v.Summary = append(v.Summary, fmt.Sprintf("%d gaps cut the window: the times between the green bars cannot be recovered to.", n-1))
		}
	}
	var newest *status.Backup
	for i := range r.Backups {
		if b := &r.Backups[i]; b.Usable && (newest == nil || b.StopTime.After(newest.StopTime)) {
			newest = b
		}
	}
	if newest != nil {
		exact := false
		if n := len(r.Windows); n > 0 {
			_, exact = r.WindowEnd(r.Windows[n-1])
		}
		if exact {
			v.Summary = append(v.Summary, fmt.Sprintf("The newest backup, %s, ended at %s: recovery starts there and replays WAL forward; it is not the latest recoverable point.", newest.Name, ts(newest.StopTime)))
		} else {
			v.Summary = append(v.Summary, fmt.Sprintf("The newest backup, %s, ended at %s: recovery starts there and replays WAL forward.", newest.Name, ts(newest.StopTime)))
		}
	}
	if vs := r.Verifies; vs != nil && vs.Last != nil && !vs.Last.OK {
		v.Summary = append(v.Summary, fmt.Sprintf("The last pgb verify (%s) FAILED: the repository may not restore as drawn.", ts(vs.Last.Finished)))
	}
	if d := r.Drills; d != nil && d.LastFailed != nil {
		v.Summary = append(v.Summary, fmt.Sprintf("The last drill (%s) FAILED.", ts(d.LastFailed.Finished)))
	}
	if w := r.NewestWAL; w != nil {
		v.Summary = append(v.Summary, fmt.Sprintf("Newest WAL archived %s (%s old when read): what was written since would be lost if the primary died then.", ts(w.Stored), (time.Duration(w.AgeSeconds)*time.Second).String()))
	}
	return v
}

// Write writes the page.
func Write(w io.Writer, p Page) error {
	var views []repoView
	for _, r := range p.Reports {
		views = append(views, view(r, p.Now))
	}
	for _, f := range p.Failed {
		views = append(views, repoView{Repository: f.Repository, Nothing: true, Failed: true,
			Summary: []string{"This repository could not be read: " + f.Err, "Nothing is shown for it: what it can recover is unknown until it can be read."}})
	}
	// Parsed here, not at package initialisation: every pgb process (wal-push's, once
	// per WAL segment) would pay for it.
	page, err := template.New("page").Parse(pageTemplate)
	if err != nil {
		return fmt.Errorf("statushtml: %w", err)
	}
	return page.Execute(w, struct {
		Repos             []repoView
		Now, Version      string
		Width             int
		Left, PlotWidth   int
		Window, Gap, Last string
		BarH, LaneH, DotR int
	}{views, ts(p.Now), p.Version, SVGWidth, Left, PlotWidth, ColorWindow, ColorGap, ColorLastCommit, barH, LaneH, markerR})
}

const pageTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgb status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 24px 0 6px; }
.meta { color: #666; font-size: 12px; }
.summary { margin: 6px 0 10px; padding: 8px 12px; background: #f3f7f3; border-left: 4px solid {{.Window}}; }
.summary.nothing { background: #fbeaea; border-left-color: {{.Gap}}; }
.summary p { margin: 2px 0; }
.warn { color: #a40000; }
svg { display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
.window { fill: {{.Window}}; }
.gap { fill: {{.Gap}}; }
.backup.full { fill: #555; }
.backup.incr { fill: #aaa; }
.backup.permanent { stroke: #000; stroke-width: 2; }
.backup.unusable { fill: #fff; stroke: #d7191c; stroke-dasharray: 3 2; }
.point { fill: #fdae61; stroke: #7a4a00; }
.point.unreachable { fill: #fff; }
.drill.ok { fill: {{.Window}}; }
.drill.failed { fill: {{.Gap}}; }
.verify.ok { fill: {{.Window}}; }
.verify.failed { fill: {{.Gap}}; }
.lastcommit { stroke: {{.Last}}; stroke-width: 2; }
.now { stroke: #999; stroke-dasharray: 4 3; }
.lane { stroke: #eee; }
table { border-collapse: collapse; margin-top: 8px; font-size: 12px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
.legend span { display: inline-block; margin-right: 14px; }
.sw { display: inline-block; width: 12px; height: 12px; vertical-align: -2px; margin-right: 4px; }
</style>
</head>
<body>
<h1>pgb status</h1>
<div class="meta">Read {{.Now}}{{if .Version}} by pgb {{.Version}}{{end}}. Hover over a mark for its exact times; the table below lists them.</div>
<div class="legend meta">
<span><i class="sw" style="background:{{.Window}}"></i>recoverable window (continuous WAL)</span>
<span><i class="sw" style="background:{{.Gap}}"></i>gap: not recoverable</span>
<span><i class="sw" style="background:{{.Last}}"></i>last archived commit: the latest recoverable point</span>
<span><i class="sw" style="background:#555"></i>full backup</span>
<span><i class="sw" style="background:#aaa"></i>incremental backup</span>
<span><i class="sw" style="background:#fdae61"></i>restore point</span>
</div>
{{range .Repos}}
<section class="repo" data-axis-from="{{.AxisFromRaw}}" data-axis-to="{{.AxisToRaw}}">
<h2>{{.Repository}}</h2>
<div class="summary{{if .Nothing}} nothing{{end}}">{{range .Summary}}<p>{{.}}</p>{{end}}{{range .Warnings}}<p class="warn">Warning: {{.}}</p>{{end}}</div>
{{if not .Failed}}<svg width="{{$.Width}}" height="{{.Height}}" viewBox="0 0 {{$.Width}} {{.Height}}" role="img" aria-label="recoverable window of {{.Repository}}">
{{range .Lanes}}<line class="lane" x1="0" x2="{{$.Width}}" y1="{{.Y}}" y2="{{.Y}}"/>
<text x="4" y="{{.Y}}" dy="21">{{.Name}}</text>
{{range .Marks}}{{if eq .Class "window" "gap"}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{else if eq .W 0.0}}<circle class="{{.Class}}" cx="{{.X}}" cy="{{.Y}}" r="{{$.DotR}}"><title>{{.Title}}</title></circle>
{{else}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{end}}{{end}}{{end}}
<line class="now" x1="{{.NowX}}" x2="{{.NowX}}" y1="10" y2="{{.AxisY}}"><title>now ({{$.Now}})</title></line>
{{$top := .}}{{with .EndLine}}<line class="lastcommit" x1="{{.X}}" x2="{{.X}}" y1="4" y2="{{$top.AxisY}}"><title>{{.Title}}</title></line>
<text x="{{.X}}" y="12" dx="-4" text-anchor="end">{{.Label}}</text>{{end}}
<line class="lane" x1="{{$.Left}}" x2="{{$.Left}}" y1="10" y2="{{.AxisY}}"/>
{{$ay := .AxisY}}{{range .Ticks}}<text x="{{.X}}" y="{{$ay}}" dy="14" text-anchor="middle">{{.Label}}</text>{{end}}
</svg>
<div class="meta">Axis: {{.AxisFrom}} to {{.AxisTo}} (now), UTC.</div>
<table>
<tr><th>what</th><th>name</th><th>timeline</th><th>from</th><th>to</th><th>note</th></tr>
{{range .Rows}}<tr><td>{{.Kind}}</td><td>{{.Name}}</td><td>{{.Timeline}}</td><td>{{.From}}</td><td>{{.To}}</td><td>{{.Note}}</td></tr>
{{end}}</table>
{{end}}</section>
{{end}}
</body>
</html>
`
