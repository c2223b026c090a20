// Command bucketq runs the bucketq durable queue: `produce` accepts usage
// events over HTTP (OpenMeter-compatible) and OTLP and stores them in an
// object-storage bucket, `consume` delivers them to a metering API, `run`
// does both in one process, `inspect` prints the manifest or a batch, and
// `dead-letters` lists, shows and re-drives dead letters, `replay`
// re-sends delivered history from the journal, and `import` enqueues usage
// files from a bucket.
// Run `bucketq help` for usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure: the bucket, the sink, corrupt data
	exitUsage   = 2 // bad flags or config
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// runMain dispatches a command line and returns the exit code.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv config.Env) int {
	if len(args) == 0 {
		writeHelp(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "help", "-h", "-help", "--help":
		if cmd == "help" && len(rest) > 0 {
			if !writeCommandHelp(stdout, rest[0]) {
				fmt.Fprintf(stderr, "bucketq: unknown command %q (see bucketq help)\n", rest[0])
				return exitUsage
			}
			return exitOK
		}
		writeHelp(stdout)
		return exitOK
	case "version", "-version", "--version":
		writeVersion(stdout)
		return exitOK
	case "produce":
		err = serveCommand(ctx, cmd, config.RolesProduce, rest, stderr, getenv)
	case "consume":
		err = serveCommand(ctx, cmd, config.RolesConsume, rest, stderr, getenv)
	case "run":
		err = serveCommand(ctx, cmd, config.RolesRun, rest, stderr, getenv)
	case "inspect":
		err = inspectCommand(ctx, rest, stdout, stderr, getenv)
	case "repair":
		err = repairCommand(ctx, rest, stdout, stderr, getenv)
	case "replay":
		err = replayCommand(ctx, rest, stdout, stderr, getenv)
	case "bench":
		err = benchCommand(ctx, rest, stdout, stderr)
	case "import":
		err = importCommand(ctx, rest, stdout, stderr, getenv)
	case "dead-letters", "deadletters":
		cmd = "dead-letters"
		err = deadLettersCommand(ctx, rest, stdout, stderr, getenv)
	default:
		fmt.Fprintf(stderr, "bucketq: unknown command %q (commands: run, produce, consume, import, replay, inspect, repair, dead-letters, bench, version, help)\n", cmd)
		return exitUsage
	}
	var ce *config.Error
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		writeCommandHelp(stdout, cmd)
		return exitOK
	case errors.As(err, &ce):
		// One line, even when a wrapped message (a CEL or YAML error)
		// spans several.
		fmt.Fprintf(stderr, "bucketq: %s (see bucketq help %s)\n", config.OneLine(err.Error()), cmd)
		return exitUsage
	}
	fmt.Fprintf(stderr, "bucketq: %v\n", err)
	return exitFailure
}
