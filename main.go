// Command pgb is a PostgreSQL backup and point-in-time-recovery tool.
package main

import (
	"context"
	"os"

	"github.com/pgb-project/pgb/cmd"
)

// Set by the linker (-X main.version=… -X main.commit=…) in release builds.
var (
	version = "dev"
	commit  = ""
)

func main() {
	os.Exit(cmd.Main(context.Background(), os.Args, cmd.Build{Version: version, Commit: commit}))
}
