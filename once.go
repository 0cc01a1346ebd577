package idem

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
)

// OnceScope holds every `idem once` key in a store.
const OnceScope = "once"

// onceRecord is what a completed key stores.
type onceRecord struct {
	Exit      int    `json:"exit"`
	Stdout    []byte `json:"stdout"`
	Bytes     int64  `json:"bytes"`     // stdout size before truncation
	Truncated bool   `json:"truncated"` // Stdout holds only the first part
	Resolved  bool   `json:"resolved,omitempty"`
}

// ExitError ends a command with a given exit code and message: the
// outcomes of `idem once` that are not failures of idem itself (75 held,
// 4 unknown outcome, the command's own status).
type ExitError struct {
	Code int
	Msg  string
	Err  error // what it is, for callers that branch on it (ErrHeld)
}

func (e *ExitError) Error() string { return e.Msg }
func (e *ExitError) ExitCode() int { return e.Code }
func (e *ExitError) Unwrap() error { return e.Err }

// ErrHeld: another run holds the key. Once exits 75 for it, but so may the
// command itself (EX_TEMPFAIL), so a caller tells them apart with
// errors.Is, not by the code.
var ErrHeld = errors.New("key held by another run")

// OnceSpec is one `idem once`: run Command at most once per Key.
type OnceSpec struct {
	Key        string
	Command    []string
	Lease      time.Duration // how long a claim outlives a holder that stopped renewing it
	TTL        time.Duration // how long a done key is remembered
	Wait       time.Duration // wait this long for a running holder before giving up (exit 75)
	AtMostOnce bool          // after a holder died, exit 4 instead of running again
	MaxOutput  int64         // bytes of stdout recorded
	// QuietReplay: a done key prints neither its recorded stdout nor a
	// note (backfill, which reports each date itself).
	QuietReplay bool
	Stdin       io.Reader
	Stdout      io.Writer // the command's stdout, or the replayed one
	Stderr      io.Writer // the command's stderr and idem's notes
}

// CheckKey enforces the key rules shared by once and serve.
func CheckKey(key string) error {
	if key == "" {
		return BadInput("--key is required (e.g. --key \"$(idem key job=send-invoice invoice=2024-117)\")")
	}
	if len(key) > 255 {
		return BadInput("--key is %d characters, at most 255 allowed", len(key))
	}
	return nil
}

// Validate checks the spec before any store is opened, so bad input is
// exit 2 whether or not the store is reachable.
func (o *OnceSpec) Validate() error {
	if err := CheckKey(o.Key); err != nil {
		return err
	}
	if len(o.Command) == 0 {
		return BadInput("no command: idem once --key KEY -- COMMAND [ARG...]")
	}
	if o.Lease < time.Second || o.TTL < o.Lease || o.MaxOutput < 0 || o.Wait < 0 {
		return BadInput("need --lease ≥ 1s, --ttl ≥ --lease, --wait ≥ 0 and --max-output ≥ 0")
	}
	if _, err := exec.LookPath(o.Command[0]); err != nil {
		return BadInput("command %q: %v", o.Command[0], err)
	}
	for _, w := range []*io.Writer{&o.Stdout, &o.Stderr} {
		if *w == nil {
			*w = io.Discard
		}
	}
	return nil
}

// Once claims the key in store, runs the command if the claim is new (or
// its holder died, unless AtMostOnce), records its exit code and stdout on
// success and releases the key on failure; a done key replays its stdout.
func Once(ctx context.Context, store KeyStore, o OnceSpec) error {
	_, err := RunOnce(ctx, store, o)
	return err
}

// RunOnce is Once, also saying whether the key was done already (then
// nothing ran).
func RunOnce(ctx context.Context, store KeyStore, o OnceSpec) (replayed bool, err error) {
	if err := o.Validate(); err != nil {
		return false, err
	}
	err = runOnce(ctx, store, o, &replayed)
	return replayed, err
}

func runOnce(ctx context.Context, store KeyStore, o OnceSpec, replayed *bool) error {
	var err error
	// Store calls must finish even while idem is being stopped: a claim
	// left behind costs a lease, a lost completion could run COMMAND twice.
	sctx := context.WithoutCancel(ctx)
	req := ClaimRequest{Scope: OnceScope, Key: o.Key, Lease: o.Lease, TTL: o.TTL, Takeover: !o.AtMostOnce}
	deadline := time.Now().Add(o.Wait)
	var res ClaimResult
	for pause := 50 * time.Millisecond; ; pause = min(pause*2, time.Second) {
		if res, err = store.Claim(sctx, req); err != nil {
			return err
		}
		if res.Status != StatusHeld || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return &ExitError{Code: ExitTempFail, Msg: fmt.Sprintf("interrupted while waiting for key %q", o.Key)}
		case <-time.After(min(pause, time.Until(deadline))):
		}
	}
	switch res.Status {
	case StatusDone:
		*replayed = true
		return replayOnce(o, res)
	case StatusHeld:
		return &ExitError{Code: ExitTempFail, Msg: fmt.Sprintf("key %q is held by another run (its lease ends in %s); not running", o.Key, res.LeaseLeft.Round(time.Second)), Err: ErrHeld}
	case StatusAbandoned:
		return &ExitError{Code: ExitUnknown, Msg: fmt.Sprintf("key %q: an earlier run claimed it and stopped renewing its lease without finishing; "+
			"whether COMMAND took effect is unknown. Check, then run `idem once --resolve %s done` (it happened) or `--resolve %s retry` (run it again)",
			o.Key, o.Key, o.Key)}
	case StatusClaimed:
	default:
		return fmt.Errorf("key %q: unexpected claim status %v", o.Key, res.Status)
	}
	if res.Attempt > 1 {
		fmt.Fprintf(o.Stderr, "idem: key %q: an earlier run died holding it; running again (attempt %d, at-least-once)\n", o.Key, res.Attempt)
	}
	return execOnce(ctx, sctx, o, store, res.Token)
}

func execOnce(ctx, sctx context.Context, o OnceSpec, store KeyStore, token string) error {
	args := o.Command
	stop := heartbeat(sctx, store, o, token)
	out := &capped{limit: o.MaxOutput}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = o.Stdin, o.Stderr
	cmd.Stdout = io.MultiWriter(o.Stdout, out)
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
			releaseOnce(sctx, o.Stderr, store, o.Key, token)
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
		releaseOnce(sctx, o.Stderr, store, o.Key, token)
		return &ExitError{Code: code, Msg: fmt.Sprintf("%s exited with status %d; key %q released, a retry will run it again", args[0], code, o.Key)}
	}
	payload, _ := json.Marshal(onceRecord{Exit: 0, Stdout: out.buf.Bytes(), Bytes: out.n, Truncated: out.n > int64(out.buf.Len())})
	var err error
	for try, wait := 0, 100*time.Millisecond; try < 5; try, wait = try+1, wait*3 {
		err = store.Complete(sctx, OnceScope, o.Key, token, payload, o.TTL)
		if try > 0 && errors.Is(err, ErrLost) && CompletedAs(sctx, store, OnceScope, o.Key, "", payload, o.TTL) {
			err = nil // an earlier try committed; its answer was lost
		}
		if err == nil || errors.Is(err, ErrLost) {
			break
		}
		time.Sleep(wait)
	}
	switch {
	case errors.Is(err, ErrLost):
		return &ExitError{Code: ExitFailed, Msg: fmt.Sprintf("%s succeeded, but key %q was taken over by another run after this one's lease expired: "+
			"the command may have run twice; this run's result is not recorded (raise --lease)", args[0], o.Key)}
	case err != nil:
		return &ExitError{Code: ExitFailed, Msg: fmt.Sprintf("%s succeeded, but recording key %q failed: %v; once the lease ends a retry will run it again", args[0], o.Key, err)}
	}
	return nil
}

// heartbeat renews the lease every lease/3 while COMMAND runs, so only a
// holder that died (or hung with idem) loses its claim.
func heartbeat(ctx context.Context, store KeyStore, o OnceSpec, token string) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(o.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				c, cancel := context.WithTimeout(ctx, o.Lease/3)
				err := store.Extend(c, OnceScope, o.Key, token, o.Lease)
				cancel()
				if errors.Is(err, ErrLost) {
					fmt.Fprintf(o.Stderr, "idem: key %q: lost the claim (lease expired and another run took it)\n", o.Key)
					return
				}
				if err != nil {
					fmt.Fprintf(o.Stderr, "idem: key %q: could not renew the lease: %v\n", o.Key, err)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func releaseOnce(ctx context.Context, stderr io.Writer, store KeyStore, key, token string) {
	if err := store.Release(ctx, OnceScope, key, token); err != nil {
		fmt.Fprintf(stderr, "idem: key %q: could not release the claim (%v); it ends with its lease\n", key, err)
	}
}

func replayOnce(o OnceSpec, res ClaimResult) error {
	key := o.Key
	var rec onceRecord
	if err := json.Unmarshal(res.Payload, &rec); err != nil {
		return fmt.Errorf("key %q: stored record unreadable: %w", key, err)
	}
	if o.QuietReplay {
		return nil
	}
	o.Stdout.Write(rec.Stdout)
	how := "done"
	if rec.Resolved {
		how = "resolved as done"
	}
	fmt.Fprintf(o.Stderr, "idem: key %q was %s at %s; not running again\n", key, how, res.CompletedAt.UTC().Format(time.RFC3339))
	if rec.Truncated {
		fmt.Fprintf(o.Stderr, "idem: the recorded stdout was truncated: %d of %d bytes printed\n", len(rec.Stdout), rec.Bytes)
	}
	return nil
}

// ResolveOnce settles an abandoned claim: "done" records it as done
// without running anything, "retry" frees it so the next call runs the
// command.
func ResolveOnce(ctx context.Context, store KeyStore, key, how string, ttl time.Duration, stderr io.Writer) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if how != "done" && how != "retry" {
		return BadInput("usage: idem once --resolve KEY done|retry")
	}
	args := []string{how}
	sctx := context.WithoutCancel(ctx)
	res, err := store.Claim(sctx, ClaimRequest{Scope: OnceScope, Key: key, Lease: time.Minute, TTL: max(ttl, time.Minute), Takeover: true})
	if err != nil {
		return err
	}
	switch res.Status {
	case StatusDone:
		if args[0] == "retry" {
			return BadInput("key %q is done (at %s), not abandoned: nothing to retry", key, res.CompletedAt.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(stderr, "idem: key %q was already done\n", key)
		return nil
	case StatusHeld:
		return &ExitError{Code: ExitTempFail, Msg: fmt.Sprintf("key %q is held by a running call; nothing to resolve", key), Err: ErrHeld}
	case StatusClaimed:
	default:
		return fmt.Errorf("key %q: unexpected claim status %v", key, res.Status)
	}
	if res.Attempt == 1 {
		// A first claim: nothing was pending under this key. Marking it
		// done would silently stop a mistyped key's real command from
		// ever running; say so and leave the key as it was.
		if err := store.Release(sctx, OnceScope, key, res.Token); err != nil {
			return err
		}
		return BadInput("key %q has no abandoned claim to resolve (never claimed, or expired); nothing recorded", key)
	}
	if args[0] == "retry" {
		if err := store.Release(sctx, OnceScope, key, res.Token); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "idem: key %q freed; the next call runs its command\n", key)
		return nil
	}
	payload, _ := json.Marshal(onceRecord{Exit: 0, Stdout: []byte{}, Resolved: true})
	if err := store.Complete(sctx, OnceScope, key, res.Token, payload, ttl); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "idem: key %q marked done; its command will not run again\n", key)
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
