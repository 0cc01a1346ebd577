package idem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os/exec"
	"strings"
	"time"
)

// VerifySpec is one `idem verify`: run a command again and again (and kill
// it), and prove that the target ends up with the same content every time.
type VerifySpec struct {
	Command   []string // argv, run without a shell
	Runs      int      // clean runs, at least 1
	Crashes   int      // killed runs, each followed by a run to completion
	Seed      uint64   // draws the kill moments
	Table     string
	Partition *Partition
	Snapshot  SnapshotOptions
	// Output receives the command's stdout and stderr, so the caller's
	// stdout stays the report's.
	Output io.Writer
	Log    *slog.Logger
}

// VerifyReport is the outcome (SPEC.md § idem verify, plus seed, kills and
// where the difference was seen).
type VerifyReport struct {
	Runs         int      `json:"runs"`
	Crashes      int      `json:"crashes"`
	Identical    bool     `json:"identical"`
	Fingerprints []string `json:"fingerprints"`
	// Labels and Rows go with Fingerprints: which run each is from
	// ("run 2", "rerun after kill 1 at 40ms") and its row count.
	Labels       []string `json:"labels"`
	Rows         []int64  `json:"rows"`
	Seed         uint64   `json:"seed"`
	CleanSeconds float64  `json:"clean_seconds"`
	Kills        []Kill   `json:"kills,omitempty"`
	// DiffOf names the two states compared when they differ.
	DiffOf string `json:"diff_of,omitempty"`
	Diff   *Diff  `json:"diff,omitempty"`
}

// Kill is one crash: when the command was killed, and the target's
// fingerprint right after the kill and after the rerun.
type Kill struct {
	AtMillis   int64  `json:"at_ms"`
	Killed     bool   `json:"killed"` // false: the command finished before the moment came
	AfterKill  string `json:"after_kill"`
	AfterRerun string `json:"after_rerun,omitempty"`
}

// CommandFailed is a run of the command under test that exited non-zero
// on its own: the job is broken, which is not an idempotency verdict.
type CommandFailed struct {
	Run    string
	Status int // the command's exit status, -1 when it died of a signal
	Err    error
}

func (e *CommandFailed) Error() string {
	return fmt.Sprintf("%s: the command failed (exit status %d); fix the job first, verify compares only successful runs", e.Run, e.Status)
}
func (e *CommandFailed) Unwrap() error { return e.Err }

// ExitCode is verify's, not the command's: the wrapped exec error would
// otherwise pass the job's own status through.
func (e *CommandFailed) ExitCode() int { return ExitFailed }

// Verify runs the spec. A difference is not an error: it is reported with
// Identical false and the diff of the first two states that differed.
func Verify(ctx context.Context, t Target, spec VerifySpec) (*VerifyReport, error) {
	if len(spec.Command) == 0 {
		return nil, BadInput("verify needs a command after --")
	}
	if spec.Runs < 1 {
		return nil, BadInput("--runs must be at least 1")
	}
	if spec.Crashes < 0 {
		return nil, BadInput("--crash must not be negative")
	}
	if spec.Runs < 2 && spec.Crashes == 0 {
		return nil, BadInput("nothing to compare: give --runs 2 or more, or --crash K")
	}
	if _, err := exec.LookPath(spec.Command[0]); err != nil {
		return nil, BadInput("cannot start %q: %v", spec.Command[0], err)
	}
	if spec.Log == nil {
		spec.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if spec.Output == nil {
		spec.Output = io.Discard
	}
	rep := &VerifyReport{Runs: spec.Runs, Crashes: spec.Crashes, Seed: spec.Seed, Identical: true}
	var ref *Snapshot
	defer func() {
		if ref != nil {
			ref.Close()
		}
	}()
	// check snapshots the target and compares it with the reference (the
	// first clean run); it returns false on a difference, with the report
	// filled in.
	check := func(label string, record bool) (fp string, same bool, err error) {
		s, err := TakeSnapshot(ctx, t, spec.Table, spec.Partition, spec.Snapshot)
		if err != nil {
			return "", false, err
		}
		fp = s.FP.Hex()
		if record {
			rep.Fingerprints = append(rep.Fingerprints, fp)
			rep.Labels = append(rep.Labels, label)
			rep.Rows = append(rep.Rows, s.FP.Rows)
		}
		if ref == nil {
			ref = s
			return fp, true, nil
		}
		defer s.Close()
		d, err := Compare(ref, s)
		if err != nil {
			return "", false, err
		}
		if d.Identical {
			return fp, true, nil
		}
		rep.Identical, rep.Diff, rep.DiffOf = false, d, "run 1 -> "+label
		return fp, false, nil
	}

	// clean is the run time the kills are spread over: that of the latest
	// completed run, not an average with the first (which often creates
	// tables and loads from scratch, while every killed run is a rerun),
	// refreshed after each rerun so the moments follow the job's pace.
	var clean time.Duration
	for i := 1; i <= spec.Runs; i++ {
		label := fmt.Sprintf("run %d", i)
		took, err := runToEnd(ctx, spec, label)
		if err != nil {
			return nil, err
		}
		clean = took
		spec.Log.Info("verify: run finished", "run", i, "seconds", took.Seconds())
		_, same, err := check(label, true)
		if err != nil {
			return nil, err
		}
		if !same {
			return rep, nil
		}
	}
	rep.CleanSeconds = clean.Seconds()
	rng := rand.New(rand.NewPCG(spec.Seed, 0x1de3))
	for k := range spec.Crashes {
		// Stratified moments: the k-th kill falls in the k-th slice of the
		// clean run time, so K kills cover the whole run, not a clump.
		at := time.Duration((float64(k) + rng.Float64()) / float64(spec.Crashes) * float64(clean))
		label := fmt.Sprintf("kill %d at %dms", k+1, at.Milliseconds())
		killed, err := runAndKill(ctx, spec, label, at)
		if err != nil {
			return nil, err
		}
		kill := Kill{AtMillis: at.Milliseconds(), Killed: killed}
		fp, same, err := check("state after "+label, false)
		if err != nil {
			return nil, err
		}
		kill.AfterKill = fp
		if !same {
			rep.Kills = append(rep.Kills, kill)
			return rep, nil
		}
		rerun := "rerun after " + label
		took, err := runToEnd(ctx, spec, rerun)
		if err != nil {
			return nil, err
		}
		clean = took
		fp, same, err = check(rerun, true)
		if err != nil {
			return nil, err
		}
		kill.AfterRerun = fp
		rep.Kills = append(rep.Kills, kill)
		if !same {
			return rep, nil
		}
	}
	return rep, nil
}

func command(ctx context.Context, spec VerifySpec) *exec.Cmd {
	c := exec.CommandContext(ctx, spec.Command[0], spec.Command[1:]...)
	c.Stdout, c.Stderr = spec.Output, spec.Output
	setProcessGroup(c)
	// A cancelled verify takes the whole job down, not only its shell.
	c.Cancel = func() error { return killGroup(c) }
	return c
}

func runToEnd(ctx context.Context, spec VerifySpec, label string) (time.Duration, error) {
	c := command(ctx, spec)
	start := time.Now()
	if err := c.Start(); err != nil {
		return 0, BadInput("cannot start %s: %v", strings.Join(spec.Command, " "), err)
	}
	err := c.Wait()
	took := time.Since(start)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return 0, &CommandFailed{Run: label, Status: code, Err: err}
	}
	return took, nil
}

// runAndKill starts the command and SIGKILLs its whole process group at
// moment at. killed is false when the command had already finished (then
// it must have succeeded, as any clean run).
func runAndKill(ctx context.Context, spec VerifySpec, label string, at time.Duration) (killed bool, err error) {
	c := command(ctx, spec)
	if err := c.Start(); err != nil {
		return false, BadInput("cannot start %s: %v", strings.Join(spec.Command, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	timer := time.NewTimer(at)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			var ee *exec.ExitError
			code := -1
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			return false, &CommandFailed{Run: label + " (finished before the kill)", Status: code, Err: err}
		}
		return false, nil
	case <-timer.C:
		_ = killGroup(c)
		<-done
		return true, nil
	}
}
