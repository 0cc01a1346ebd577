// Command idem makes data-pipeline writes safe to run twice. This package
// only parses flags and wires the packages together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/idemhq/idem"
	"github.com/spf13/cobra"
)

func main() {
	os.Exit(profiled(func() int { return run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr) }))
}

// profiled runs cmd, writing profiles of the whole command for the
// benchmarks in bench/: IDEM_CPUPROFILE=file a CPU profile,
// IDEM_MEMPROFILE=file the allocations (go tool pprof -sample_index=alloc_space).
func profiled(cmd func() int) int {
	if path := os.Getenv("IDEM_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			defer f.Close()
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	if path := os.Getenv("IDEM_MEMPROFILE"); path != "" {
		defer func() {
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	return cmd()
}

// env is what commands share: the standard streams and a logger.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	root := &cobra.Command{
		Use:   "idem",
		Short: "Make data-pipeline writes and side effects safe to run twice",
		Long: `idem loads data with idempotent write strategies, records every run in a
ledger next to the data, and proves that running a job twice changes nothing.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(loadCmd(e), runsCmd(e), checksumCmd(e), verifyCmd(e), diffCmd(e))
	root.AddCommand(onceCmd(e), serveCmd(e), keyCmd(e), backfillCmd(e), lintCmd(e))
	// Flag parsing errors are usage errors: exit 2.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return idem.BadInput("%v", err) })
	err := root.ExecuteContext(ctx)
	if err == nil {
		return idem.ExitOK
	}
	code := idem.ExitCode(err)
	if code == idem.ExitFailed && isCobraUsage(err) {
		code = idem.ExitBadInput
	}
	fmt.Fprintf(stderr, "idem: %v\n", err)
	return code
}

// isCobraUsage spots cobra's own argument errors (unknown command, wrong
// argument count), which it does not type.
func isCobraUsage(err error) bool {
	var ie *idem.InputError
	if errors.As(err, &ie) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
