package batch

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned by Group.Do after Close.
var ErrClosed = errors.New("batch: closed")

// Group runs operations in batches on the goroutines of their callers, as
// LevelDB's write queue does: a caller that finds no batch running runs
// one itself, taking whatever else is queued; callers that arrive
// meanwhile wait, and when the batch holding the runner's own operation
// is done, the runner hands the next batch to the first of them.
//
// A dedicated worker goroutine would cost each operation two hand-offs
// (to the worker and back), each a wake-up the scheduler pays for. Under
// light load nothing is running when an operation arrives, and it runs
// at once on its own goroutine; under heavy load operations still share
// one batch, and each hand-over wakes one goroutine, as the worker did.
//
// That hand-over sits between two batches, though, where a worker goes
// straight on to the next: for a store that is busy all the time it adds
// a wake-up to every batch. The PostgreSQL store, whose commits run back
// to back at 2,000 requests a second, measured worse with it (idem serve,
// +p50 2.36 against 1.94 ms, 4 rounds) and keeps its worker (Drain).
type Group[T any] struct {
	// Run executes one batch. It must record each operation's result in
	// the operation itself (Do returns once its operation's batch has
	// run), and must not keep the slice, which the next batch reuses.
	Run func(batch []T)
	// Max bounds a batch, so a long queue still gets answers in slices.
	Max int

	mu      sync.Mutex
	queue   []*slot[T]
	running bool
	closed  bool
	// batch and vals are reused by whichever goroutine runs the batch, so
	// a lone operation allocates no batch of its own.
	batch []*slot[T]
	vals  []T
}

type slot[T any] struct {
	v T
	// wake gets false when the slot's batch has run, true when its
	// goroutine must run the next batch. lead is set, under Group.mu,
	// just before the true is sent.
	wake chan bool
	lead bool
}

// Do queues v and returns after v's batch has run. If ctx ends first, Do
// returns ctx.Err(): if v was still queued it is taken out and never
// runs; if its batch had started, v may still run, but its result is not
// reported. A caller that is running a batch finishes it.
func (g *Group[T]) Do(ctx context.Context, v T) error {
	s := &slot[T]{v: v, wake: make(chan bool, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.queue = append(g.queue, s)
	if g.running {
		g.mu.Unlock()
		select {
		case lead := <-s.wake:
			if !lead {
				return nil
			}
		case <-ctx.Done():
			g.mu.Lock()
			switch {
			case s.lead:
				// Handed the next batch just now: run it.
				g.mu.Unlock()
				<-s.wake
			case g.remove(s):
				g.mu.Unlock()
				return ctx.Err()
			default:
				// In the batch running now, which may be stuck (a
				// SQLite lock held by another process, a network
				// stall): the caller gets its error now, as with a
				// worker goroutine, and the result is dropped. The
				// write may still happen; callers fail closed.
				g.mu.Unlock()
				return ctx.Err()
			}
		}
	} else {
		g.running = true
		g.mu.Unlock()
	}
	g.lead(s)
	return nil
}

// lead runs batches until the one holding own has run, then hands over.
func (g *Group[T]) lead(own *slot[T]) {
	max := g.Max
	if max <= 0 {
		max = 64
	}
	for {
		// The buffers are the group's: batches run one at a time, and
		// this runner is done with them before it hands over or returns.
		g.mu.Lock()
		n := min(len(g.queue), max)
		g.batch = append(g.batch[:0], g.queue[:n]...)
		g.queue = g.queue[n:]
		g.mu.Unlock()
		batch := g.batch
		g.vals = g.vals[:0]
		for _, s := range batch {
			g.vals = append(g.vals, s.v)
		}
		g.Run(g.vals)
		done := false
		for _, s := range batch {
			if s == own {
				done = true
			} else {
				s.wake <- false
			}
		}
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		if done {
			next := g.queue[0]
			next.lead = true
			g.mu.Unlock()
			next.wake <- true
			return
		}
		g.mu.Unlock()
	}
}

// remove takes s out of the queue; false if it is not there.
func (g *Group[T]) remove(s *slot[T]) bool {
	for i, q := range g.queue {
		if q == s {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			return true
		}
	}
	return false
}

// Close makes later calls to Do fail with ErrClosed and waits until no
// batch runs.
func (g *Group[T]) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	for {
		g.mu.Lock()
		idle := !g.running && len(g.queue) == 0
		g.mu.Unlock()
		if idle {
			return
		}
		// Batches are short (one commit); polling here keeps Do free of
		// a condition variable it would otherwise signal on every batch.
		time.Sleep(100 * time.Microsecond)
	}
}
