package cmd

import (
	"context"
	"io"
	"testing"
)

// BenchmarkStartup is the command line's share of a call that PostgreSQL makes once per
// WAL segment (archive_command): building the app, placing the flags, setting up,
// parsing and loading the configuration, up to the point where wal-push would run (it
// stops at the bad setting). The process start-up and package initialisation come on
// top; README, "Start-up per call".
func BenchmarkStartup(b *testing.B) {
	ctx := context.Background()
	args := []string{"pgb", "wal-push", "--compression", "bogus", "pg_wal/000000010000000000000001"}
	for b.Loop() {
		if code := run(ctx, args, Build{}, io.Discard, io.Discard); code != exitUsage {
			b.Fatalf("exit %d, want %d (usage error)", code, exitUsage)
		}
	}
}
