package idem

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"
)

// BackfillJob is one execution date of a backfill and the command that
// loads it, templates already expanded.
type BackfillJob struct {
	Date    string
	Command []string
	// Inputs digests the date's input files, when the caller knows them:
	// the same command over changed input is another key, so it runs.
	Inputs string
}

// BackfillSpec is one `idem backfill`: Jobs run Parallel at a time, each
// at most once per key in the shared key store (the ledger), so that a
// rerun skips the dates done and several processes on different machines
// sharing one store split the dates between them.
type BackfillSpec struct {
	Jobs     []BackfillJob
	Parallel int
	// Retries is how many times a date whose command exited 1 (or whose
	// store call failed) runs again, after Backoff, doubling up to
	// MaxBackoff, each wait drawn at random from its upper half so that
	// many workers do not retry in step. Other exit codes are not retried:
	// 2 says the input is bad and will stay bad.
	Retries    int
	Backoff    time.Duration
	MaxBackoff time.Duration
	Lease      time.Duration
	TTL        time.Duration
	// Poll is how often a date another process is running is looked at
	// again (it ends done, or its holder dies and its lease expires).
	Poll   time.Duration
	Stderr io.Writer // the commands' output, each line prefixed with its date
	// Self, when set, is run for a command named "idem". The key keeps
	// the name as given, so where the binary is installed (another path
	// on another machine, an upgrade) does not change any date's key.
	Self string
}

// Validate checks the spec before any store is opened, so bad flags are
// exit 2 whether or not the ledger is reachable.
func (s *BackfillSpec) Validate() error {
	if s.Parallel < 1 || s.Retries < 0 || s.Backoff <= 0 || s.MaxBackoff < s.Backoff || s.Poll <= 0 {
		return BadInput("need --parallel ≥ 1, --retries ≥ 0, --backoff > 0, --max-backoff ≥ --backoff and --poll > 0")
	}
	if s.Lease < time.Second || s.TTL < s.Lease {
		return BadInput("need --lease ≥ 1s and --ttl ≥ --lease")
	}
	return nil
}

// BackfillStatus is what became of one date.
type BackfillStatus string

const (
	BackfillRan     BackfillStatus = "ran"     // this process ran it to exit 0
	BackfillSkipped BackfillStatus = "skipped" // already done, by an earlier or another process
	BackfillFailed  BackfillStatus = "failed"
)

// BackfillResult is one date's outcome, reported as soon as it is known.
type BackfillResult struct {
	Date     string         `json:"execution_date"`
	Status   BackfillStatus `json:"status"`
	Attempts int            `json:"attempts"`
	Exit     int            `json:"exit_code"`
	Seconds  float64        `json:"seconds"`
	Error    string         `json:"error,omitempty"`
	Key      string         `json:"key"`
}

// BackfillKey is the key a date's command is claimed under: it hashes
// the expanded command and the input digest, so a date is skipped only
// when done with the same command over the same input, and the date leads
// for people reading the store.
func BackfillKey(j BackfillJob) string {
	argv, _ := json.Marshal(j.Command)
	f := map[string]string{"argv": string(argv)}
	if j.Inputs != "" {
		f["inputs"] = j.Inputs
	}
	return "backfill:" + j.Date + ":" + DeriveKey(f)
}

// Backfill runs every job and calls report once per date, from the
// worker that finished it. It returns an *ExitError when a date failed:
// code 2 when every failure was the command's exit 2 (bad input), else 1
// (a rerun resumes where this one stopped). When ctx ends, running
// commands get SIGTERM and are waited for, no new date starts, and the
// dates not done are left for the next run.
func Backfill(ctx context.Context, store KeyStore, spec BackfillSpec, report func(BackfillResult)) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if spec.Stderr == nil {
		spec.Stderr = io.Discard
	}
	q := newBackfillQueue(spec.Jobs)
	var mu sync.Mutex // one report and one output line at a time
	var failed, bad int
	var wg sync.WaitGroup
	for range min(spec.Parallel, len(spec.Jobs)) {
		wg.Go(func() {
			for {
				it, ok := q.next(ctx)
				if !ok {
					return
				}
				r, again := runBackfillDate(ctx, store, spec, it, &mu)
				if again > 0 {
					q.later(it, again)
					continue
				}
				q.done()
				mu.Lock()
				if r.Status == BackfillFailed {
					failed++
					if r.Exit == ExitBadInput {
						bad++
					}
				}
				report(r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	switch {
	case ctx.Err() != nil && q.left() > 0:
		return &ExitError{Code: ExitFailed, Msg: fmt.Sprintf("interrupted with %d date(s) not done; run the same backfill again to finish them", q.left())}
	case failed > 0 && failed == bad:
		return &ExitError{Code: ExitBadInput, Msg: fmt.Sprintf("%d date(s) failed with bad input (exit 2); fix the input and run the backfill again", failed)}
	case failed > 0:
		return &ExitError{Code: ExitFailed, Msg: fmt.Sprintf("%d date(s) failed; run the same backfill again to retry them (dates done are skipped)", failed)}
	}
	return nil
}

// backfillItem is a date in the queue with what its runs so far did.
type backfillItem struct {
	job      BackfillJob
	key      string
	attempts int
	started  time.Time
	notAt    time.Time // not before
}

// runBackfillDate runs one attempt at a date. again > 0 puts the date
// back in the queue for that long: another process holds it, or exit 1
// with retries left.
func runBackfillDate(ctx context.Context, store KeyStore, spec BackfillSpec, it *backfillItem, mu *sync.Mutex) (r BackfillResult, again time.Duration) {
	if it.started.IsZero() {
		it.started = time.Now()
	}
	// Two writers, one per stream: exec copies each from its own goroutine.
	out := &linePrefixer{w: spec.Stderr, prefix: "[" + it.job.Date + "] ", mu: mu}
	errOut := &linePrefixer{w: spec.Stderr, prefix: out.prefix, mu: mu}
	argv := it.job.Command
	if argv[0] == "idem" && spec.Self != "" {
		argv = append([]string{spec.Self}, argv[1:]...)
	}
	o := OnceSpec{Key: it.key, Command: argv, Lease: spec.Lease, TTL: spec.TTL,
		MaxOutput: 64 << 10, QuietReplay: true, Stdout: out, Stderr: errOut}
	replayed, err := RunOnce(ctx, store, o)
	out.flush()
	errOut.flush()
	r = BackfillResult{Date: it.job.Date, Key: it.key, Attempts: it.attempts}
	finish := func(s BackfillStatus, code int, err error) (BackfillResult, time.Duration) {
		r.Status, r.Exit, r.Seconds = s, code, time.Since(it.started).Seconds()
		if err != nil {
			r.Error = err.Error()
		}
		return r, 0
	}
	var ee *ExitError
	switch {
	case err == nil && replayed:
		return finish(BackfillSkipped, 0, nil)
	case err == nil:
		it.attempts++
		r.Attempts = it.attempts
		return finish(BackfillRan, 0, nil)
	case errors.Is(err, ErrHeld) && ctx.Err() == nil:
		// Held by a run elsewhere: look again later, not an attempt. (A
		// command's own exit 75 is an ordinary failure below.)
		return r, spec.Poll
	case ctx.Err() != nil:
		return finish(BackfillFailed, ExitFailed, fmt.Errorf("interrupted: %w", err))
	}
	it.attempts++
	r.Attempts = it.attempts
	code := ExitCode(err)
	if errors.As(err, &ee) {
		code = ee.Code
	}
	if code == ExitFailed && it.attempts <= spec.Retries {
		// Exponential backoff with jitter: the upper half of the window.
		d := spec.Backoff << min(it.attempts-1, 30)
		if d > spec.MaxBackoff || d <= 0 {
			d = spec.MaxBackoff
		}
		d = d/2 + rand.N(d/2+1)
		out.emit(fmt.Appendf(nil, "idem: attempt %d failed (%v); retrying in %s\n", it.attempts, err, d.Round(time.Millisecond)))
		return r, d
	}
	return finish(BackfillFailed, code, err)
}

// backfillQueue hands out dates in order, each when its not-before time
// has come; dates put back wait their turn behind it.
type backfillQueue struct {
	mu      sync.Mutex
	items   []*backfillItem
	pending int // dates not yet finished, handed out or not
	wake    chan struct{}
}

func newBackfillQueue(jobs []BackfillJob) *backfillQueue {
	q := &backfillQueue{pending: len(jobs), wake: make(chan struct{}, 1)}
	for _, j := range jobs {
		q.items = append(q.items, &backfillItem{job: j, key: BackfillKey(j)})
	}
	return q
}

// next blocks until a date is due, and reports false when none is left
// or ctx ended.
func (q *backfillQueue) next(ctx context.Context) (*backfillItem, bool) {
	for {
		if ctx.Err() != nil {
			return nil, false
		}
		q.mu.Lock()
		if q.pending == 0 {
			q.mu.Unlock()
			q.signal() // let the other workers see it too
			return nil, false
		}
		now := time.Now()
		wait := time.Duration(-1)
		for i, it := range q.items {
			if !it.notAt.After(now) {
				q.items = append(q.items[:i], q.items[i+1:]...)
				q.mu.Unlock()
				return it, true
			}
			if d := it.notAt.Sub(now); wait < 0 || d < wait {
				wait = d
			}
		}
		q.mu.Unlock()
		var timer *time.Timer
		var due <-chan time.Time
		if wait >= 0 {
			timer = time.NewTimer(wait)
			due = timer.C
		}
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

func (q *backfillQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *backfillQueue) later(it *backfillItem, d time.Duration) {
	q.mu.Lock()
	it.notAt = time.Now().Add(d)
	q.items = append(q.items, it)
	q.mu.Unlock()
	q.signal()
}

func (q *backfillQueue) done() {
	q.mu.Lock()
	q.pending--
	q.mu.Unlock()
	q.signal()
}

func (q *backfillQueue) left() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending
}

// linePrefixer writes whole lines, each with the date in front, so that
// the output of dates running side by side does not interleave mid-line.
type linePrefixer struct {
	w      io.Writer
	prefix string
	mu     *sync.Mutex // shared by every date's writers: one line at a time
	bufMu  sync.Mutex  // the lease's heartbeat writes here beside exec's copy
	buf    []byte
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	p.bufMu.Lock()
	defer p.bufMu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.emit(p.buf[:i+1])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *linePrefixer) flush() {
	p.bufMu.Lock()
	defer p.bufMu.Unlock()
	if len(p.buf) > 0 {
		p.emit(append(p.buf, '\n'))
		p.buf = nil
	}
}

func (p *linePrefixer) emit(line []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, p.prefix)
	p.w.Write(line)
}
