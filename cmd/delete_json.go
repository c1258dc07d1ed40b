package cmd

import (
	"encoding/json"
	"io"
	"time"

	"github.com/pgb-project/pgb/internal/retention"
)

// deleteJSON is what pgb delete --json prints: the plan, or what was done. README's
// delete section documents it; fields are only ever added.
type deleteJSON struct {
	DryRun  bool `json:"dry_run"` // nothing was deleted
	Deleted bool `json:"deleted"` // the plan was carried out
	// Backups are the backups deleted (would be, in a dry run), oldest first.
	Backups []deleteBackupJSON `json:"backups"`
	// Unfinished are backups whose earlier delete was interrupted: what is left of
	// them is deleted (would be).
	Unfinished    []deleteUnfinishedJSON `json:"unfinished"`
	Kept          []deleteBackupJSON     `json:"kept"`
	RestorePoints []deleteRestorePoint   `json:"restore_points"`
	WAL           deleteWALJSON          `json:"wal"`
	// DrillRecords counts the drill records deleted (would be): all but the newest
	// retention.KeepDrills and the newest successful one.
	DrillRecords int `json:"drill_records"`
	// VerifyRecords counts the verify records deleted (would be), kept as drill records are.
	VerifyRecords int   `json:"verify_records"`
	BytesFreed    int64 `json:"bytes_freed"` // would be freed, in a dry run
	// Window is what remains recoverable: from the end of the oldest kept backup to
	// the last archived WAL; null when the repository has no backup.
	Window *deleteWindowJSON `json:"window"`
}

type deleteBackupJSON struct {
	Name       string    `json:"name"`
	StartTime  time.Time `json:"start_time"`
	StopTime   time.Time `json:"stop_time"`
	StartLSN   string    `json:"start_lsn"`
	StopLSN    string    `json:"stop_lsn"`
	Timeline   uint32    `json:"timeline"`
	StoredSize int64     `json:"stored_size"`
	Permanent  bool      `json:"permanent"`
}

type deleteUnfinishedJSON struct {
	Name       string `json:"name"`
	Objects    int    `json:"objects"`
	StoredSize int64  `json:"stored_size"`
}

type deleteRestorePoint struct {
	Name     string    `json:"name"`
	LSN      string    `json:"lsn"`
	Timeline uint32    `json:"timeline"`
	Time     time.Time `json:"time"`
}

type deleteWALJSON struct {
	Count int    `json:"count"`
	Bytes int64  `json:"bytes"`
	First string `json:"first,omitempty"` // the oldest file deleted
	Last  string `json:"last,omitempty"`  // the newest file deleted
	// StreamedSegments counts the segments whose wal-stream chunks are deleted with it.
	StreamedSegments int `json:"streamed_segments,omitempty"`
}

type deleteWindowJSON struct {
	FromBackup string    `json:"from_backup"`
	FromTime   time.Time `json:"from_time"`
	FromLSN    string    `json:"from_lsn"`
	Timeline   uint32    `json:"timeline"`
}

func deleteBackups(bs []retention.Backup) []deleteBackupJSON {
	out := []deleteBackupJSON{}
	for _, b := range bs {
		out = append(out, deleteBackupJSON{Name: b.Name, StartTime: b.StartTime.UTC(), StopTime: b.StopTime.UTC(),
			StartLSN: b.StartLSN.String(), StopLSN: b.StopLSN.String(), Timeline: b.Timeline,
			StoredSize: b.StoredSize, Permanent: b.Permanent})
	}
	return out
}

// printDeleteJSON prints res as one JSON document (see deleteJSON). Writes to stdout
// are unchecked, as for the text: the deletion is done or not whatever happens here.
func printDeleteJSON(w io.Writer, res retention.Result) {
	doc := deleteJSON{DryRun: !res.Deleted, Deleted: res.Deleted, Backups: deleteBackups(res.Delete),
		Unfinished: []deleteUnfinishedJSON{}, Kept: deleteBackups(res.Keep), RestorePoints: []deleteRestorePoint{},
		BytesFreed: res.Bytes, DrillRecords: len(res.Drills), VerifyRecords: len(res.Verifies)}
	for _, b := range res.Unfinished {
		doc.Unfinished = append(doc.Unfinished, deleteUnfinishedJSON{Name: b.Name, Objects: b.Objects, StoredSize: b.Size})
	}
	for _, rp := range res.RestorePoints {
		doc.RestorePoints = append(doc.RestorePoints, deleteRestorePoint{Name: rp.Name, LSN: rp.LSN.String(), Timeline: rp.Timeline, Time: rp.Time.UTC()})
	}
	doc.WAL.StreamedSegments = len(res.Streamed)
	for _, o := range res.WAL {
		doc.WAL.Count++
		doc.WAL.Bytes += o.Size
	}
	if n := len(res.WAL); n > 0 {
		doc.WAL.First, doc.WAL.Last = res.WAL[0].Name, res.WAL[n-1].Name
	}
	if res.Window.FromBackup != "" {
		doc.Window = &deleteWindowJSON{FromBackup: res.Window.FromBackup, FromTime: res.Window.FromTime.UTC(),
			FromLSN: res.Window.FromLSN.String(), Timeline: res.Window.Timeline}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(doc)
}
