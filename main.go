// Command pgb is a PostgreSQL backup and point-in-time-recovery tool.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pgb-project/pgb/cmd"
)

// Set by the linker (-X main.version=… -X main.commit=…) in release builds.
var (
	version = "dev"
	commit  = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmd.Main(ctx, os.Args, cmd.Build{Version: version, Commit: commit})
	stop()
	os.Exit(code)
}
