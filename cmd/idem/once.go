package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/idemhq/idem"
	"github.com/spf13/cobra"
)

// onceScope holds every `idem once` key in a store.
const onceScope = "once"

// onceRecord is what a completed key stores.
type onceRecord struct {
	Exit      int    `json:"exit"`
	Stdout    []byte `json:"stdout"`
	Bytes     int64  `json:"bytes"`     // stdout size before truncation
	Truncated bool   `json:"truncated"` // Stdout holds only the first part
	Resolved  bool   `json:"resolved,omitempty"`
}

// exitErr makes idem exit with code after printing msg (if any).
type exitErr struct {
	code int
	msg  string
}

func (e *exitErr) Error() string { return e.msg }
func (e *exitErr) ExitCode() int { return e.code }

type onceOpts struct {
	key, store, resolve string
	lease, ttl, wait    time.Duration
	atMostOnce          bool
	maxOutput           int64
}

func onceCmd(e *env) *cobra.Command {
	var o onceOpts
	c := &cobra.Command{
		Use:   "once --key KEY [flags] -- COMMAND [ARG...]",
		Short: "Run a side-effecting command at most once per idempotency key",
		Long: `Run COMMAND (no shell) only if KEY has not been done yet.

The first call claims KEY, runs COMMAND, and on exit 0 records the exit code
and stdout; a non-zero exit releases the claim so a retry runs again. Later
calls print the recorded stdout and exit 0 without running anything. While
another call holds KEY, wait up to --wait, then exit 75. If a holder died,
its lease (renewed every lease/3 while it runs) expires and the next call
runs COMMAND again (at-least-once); with --at-most-once it exits 4 instead,
until "idem once --resolve KEY done|retry" settles what happened.`,
		Example: `  idem once --key invoice-2024-117 -- ./send-invoice 2024-117
  idem once --key "$(idem key job=welcome user=42)" --store redis://127.0.0.1:6379/0 -- ./send-welcome 42
  idem once --key charge-1042 --at-most-once -- ./charge 1042
  idem once --resolve charge-1042 done     # it did happen: never run it again
  idem once --resolve charge-1042 retry    # it did not: the next call runs it`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.resolve != "" {
				return resolveOnce(cmd.Context(), e, o, args)
			}
			return runOnce(cmd.Context(), e, o, args)
		},
	}
	c.Flags().SetInterspersed(false)
	fl := c.Flags()
	fl.StringVar(&o.key, "key", "", "idempotency key (at most 255 characters)")
	fl.StringVar(&o.store, "store", defaultKeyStore, "key store URL: sqlite:PATH, postgres://…, redis://…")
	fl.DurationVar(&o.lease, "lease", 5*time.Minute, "how long a claim outlives a holder that stopped renewing it (died)")
	fl.DurationVar(&o.ttl, "ttl", 720*time.Hour, "how long a done key is remembered")
	fl.DurationVar(&o.wait, "wait", 0, "wait this long for a running holder before exiting 75")
	fl.BoolVar(&o.atMostOnce, "at-most-once", false, "after a holder died, exit 4 instead of running again")
	fl.Int64Var(&o.maxOutput, "max-output", 1<<20, "bytes of stdout to record; more is printed but not recorded")
	fl.StringVar(&o.resolve, "resolve", "", "settle KEY's abandoned claim: done (it happened) or retry (run it again)")
	return c
}

func checkKey(key string) error {
	if key == "" {
		return idem.BadInput("--key is required (e.g. --key \"$(idem key job=send-invoice invoice=2024-117)\")")
	}
	if len(key) > 255 {
		return idem.BadInput("--key is %d characters, at most 255 allowed", len(key))
	}
	return nil
}

func runOnce(ctx context.Context, e *env, o onceOpts, args []string) error {
	if err := checkKey(o.key); err != nil {
		return err
	}
	if len(args) == 0 {
		return idem.BadInput("no command: idem once --key KEY -- COMMAND [ARG...]")
	}
	if o.lease < time.Second || o.ttl < o.lease || o.maxOutput < 0 || o.wait < 0 {
		return idem.BadInput("need --lease ≥ 1s, --ttl ≥ --lease, --wait ≥ 0 and --max-output ≥ 0")
	}
	if _, err := exec.LookPath(args[0]); err != nil {
		return idem.BadInput("command %q: %v", args[0], err)
	}
	store, err := openKeyStore(ctx, o.store)
	if err != nil {
		return err
	}
	defer store.Close()
	// Store calls must finish even while idem is being stopped: a claim
	// left behind costs a lease, a lost completion could run COMMAND twice.
	sctx := context.WithoutCancel(ctx)
	req := idem.ClaimRequest{Scope: onceScope, Key: o.key, Lease: o.lease, TTL: o.ttl, Takeover: !o.atMostOnce}
	deadline := time.Now().Add(o.wait)
	var res idem.ClaimResult
	for pause := 50 * time.Millisecond; ; pause = min(pause*2, time.Second) {
		if res, err = store.Claim(sctx, req); err != nil {
			return err
		}
		if res.Status != idem.StatusHeld || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return &exitErr{idem.ExitTempFail, fmt.Sprintf("interrupted while waiting for key %q", o.key)}
		case <-time.After(min(pause, time.Until(deadline))):
		}
	}
	switch res.Status {
	case idem.StatusDone:
		return replayOnce(e, o.key, res)
	case idem.StatusHeld:
		return &exitErr{idem.ExitTempFail, fmt.Sprintf("key %q is held by another run (its lease ends in %s); not running", o.key, res.LeaseLeft.Round(time.Second))}
	case idem.StatusAbandoned:
		return &exitErr{idem.ExitUnknown, fmt.Sprintf("key %q: an earlier run claimed it and stopped renewing its lease without finishing; "+
			"whether COMMAND took effect is unknown. Check, then run `idem once --resolve %s done` (it happened) or `--resolve %s retry` (run it again)",
			o.key, o.key, o.key)}
	case idem.StatusClaimed:
	default:
		return fmt.Errorf("key %q: unexpected claim status %v", o.key, res.Status)
	}
	if res.Attempt > 1 {
		fmt.Fprintf(e.stderr, "idem: key %q: an earlier run died holding it; running again (attempt %d, at-least-once)\n", o.key, res.Attempt)
	}
	return execOnce(ctx, sctx, e, o, store, res.Token, args)
}

func execOnce(ctx, sctx context.Context, e *env, o onceOpts, store idem.KeyStore, token string, args []string) error {
	stop := heartbeat(sctx, e, store, o, token)
	out := &capped{limit: o.maxOutput}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = e.stdin, e.stderr
	cmd.Stdout = io.MultiWriter(e.stdout, out)
	// On SIGTERM or Ctrl-C, pass SIGTERM on and wait for COMMAND: its exit
	// code decides whether the key is done.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	setDeathSignal(cmd)
	runErr := cmd.Run()
	stop()
	code := 0
	if runErr != nil {
		var ee *exec.ExitError
		if !errors.As(runErr, &ee) {
			releaseOnce(sctx, e, store, o.key, token)
			return fmt.Errorf("run %s: %w", args[0], runErr)
		}
		code = ee.ExitCode()
		if code < 0 { // killed by a signal
			code = 128
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code += int(ws.Signal())
			}
		}
	}
	if code != 0 {
		releaseOnce(sctx, e, store, o.key, token)
		return &exitErr{code, fmt.Sprintf("%s exited with status %d; key %q released, a retry will run it again", args[0], code, o.key)}
	}
	payload, _ := json.Marshal(onceRecord{Exit: 0, Stdout: out.buf.Bytes(), Bytes: out.n, Truncated: out.n > int64(out.buf.Len())})
	var err error
	for try, wait := 0, 100*time.Millisecond; try < 5; try, wait = try+1, wait*3 {
		if err = store.Complete(sctx, onceScope, o.key, token, payload, o.ttl); err == nil || errors.Is(err, idem.ErrLost) {
			break
		}
		time.Sleep(wait)
	}
	switch {
	case errors.Is(err, idem.ErrLost):
		return &exitErr{idem.ExitFailed, fmt.Sprintf("%s succeeded, but key %q was taken over by another run after this one's lease expired: "+
			"the command may have run twice; this run's result is not recorded (raise --lease)", args[0], o.key)}
	case err != nil:
		return &exitErr{idem.ExitFailed, fmt.Sprintf("%s succeeded, but recording key %q failed: %v; once the lease ends a retry will run it again", args[0], o.key, err)}
	}
	return nil
}

// heartbeat renews the lease every lease/3 while COMMAND runs, so only a
// holder that died (or hung with idem) loses its claim.
func heartbeat(ctx context.Context, e *env, store idem.KeyStore, o onceOpts, token string) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(o.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				c, cancel := context.WithTimeout(ctx, o.lease/3)
				err := store.Extend(c, onceScope, o.key, token, o.lease)
				cancel()
				if errors.Is(err, idem.ErrLost) {
					fmt.Fprintf(e.stderr, "idem: key %q: lost the claim (lease expired and another run took it)\n", o.key)
					return
				}
				if err != nil {
					fmt.Fprintf(e.stderr, "idem: key %q: could not renew the lease: %v\n", o.key, err)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func releaseOnce(ctx context.Context, e *env, store idem.KeyStore, key, token string) {
	if err := store.Release(ctx, onceScope, key, token); err != nil {
		fmt.Fprintf(e.stderr, "idem: key %q: could not release the claim (%v); it ends with its lease\n", key, err)
	}
}

func replayOnce(e *env, key string, res idem.ClaimResult) error {
	var rec onceRecord
	if err := json.Unmarshal(res.Payload, &rec); err != nil {
		return fmt.Errorf("key %q: stored record unreadable: %w", key, err)
	}
	e.stdout.Write(rec.Stdout)
	how := "done"
	if rec.Resolved {
		how = "resolved as done"
	}
	fmt.Fprintf(e.stderr, "idem: key %q was %s at %s; not running again\n", key, how, res.CompletedAt.UTC().Format(time.RFC3339))
	if rec.Truncated {
		fmt.Fprintf(e.stderr, "idem: the recorded stdout was truncated: %d of %d bytes printed\n", len(rec.Stdout), rec.Bytes)
	}
	return nil
}

// resolveOnce settles an abandoned claim: done records it as done without
// running anything, retry frees it so the next call runs COMMAND.
func resolveOnce(ctx context.Context, e *env, o onceOpts, args []string) error {
	key := o.resolve
	if err := checkKey(key); err != nil {
		return err
	}
	if len(args) != 1 || (args[0] != "done" && args[0] != "retry") {
		return idem.BadInput("usage: idem once --resolve KEY done|retry")
	}
	store, err := openKeyStore(ctx, o.store)
	if err != nil {
		return err
	}
	defer store.Close()
	sctx := context.WithoutCancel(ctx)
	res, err := store.Claim(sctx, idem.ClaimRequest{Scope: onceScope, Key: key, Lease: time.Minute, TTL: max(o.ttl, time.Minute), Takeover: true})
	if err != nil {
		return err
	}
	switch res.Status {
	case idem.StatusDone:
		if args[0] == "retry" {
			return idem.BadInput("key %q is done (at %s), not abandoned: nothing to retry", key, res.CompletedAt.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(e.stderr, "idem: key %q was already done\n", key)
		return nil
	case idem.StatusHeld:
		return &exitErr{idem.ExitTempFail, fmt.Sprintf("key %q is held by a running call; nothing to resolve", key)}
	case idem.StatusClaimed:
	default:
		return fmt.Errorf("key %q: unexpected claim status %v", key, res.Status)
	}
	if args[0] == "retry" {
		if err := store.Release(sctx, onceScope, key, res.Token); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "idem: key %q freed; the next call runs its command\n", key)
		return nil
	}
	payload, _ := json.Marshal(onceRecord{Exit: 0, Stdout: []byte{}, Resolved: true})
	if err := store.Complete(sctx, onceScope, key, res.Token, payload, o.ttl); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "idem: key %q marked done; its command will not run again\n", key)
	return nil
}

// capped keeps the first limit bytes written and counts the rest.
type capped struct {
	buf   bytes.Buffer
	limit int64
	n     int64
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.limit - int64(c.buf.Len()); room > 0 {
		c.buf.Write(p[:min(int64(len(p)), room)])
	}
	c.n += int64(len(p))
	return len(p), nil
}
