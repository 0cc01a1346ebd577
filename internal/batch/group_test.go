package batch

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type op struct {
	n     int
	ran   atomic.Int32
	batch int // size of the batch it ran in
}

// TestGroupRunsEachOnceInBatches: under real contention every operation
// runs exactly once, batches never overlap, and operations share batches.
func TestGroupRunsEachOnceInBatches(t *testing.T) {
	var inRun atomic.Int32
	var batches, overlaps atomic.Int64
	g := &Group[*op]{Max: 8, Run: func(b []*op) {
		if inRun.Add(1) != 1 {
			overlaps.Add(1)
		}
		batches.Add(1)
		time.Sleep(50 * time.Microsecond) // a commit
		for _, o := range b {
			o.ran.Add(1)
			o.batch = len(b)
		}
		inRun.Add(-1)
	}}
	const workers, each = 32, 200
	ops := make([]*op, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				o := &op{n: w*each + i}
				ops[o.n] = o
				if err := g.Do(context.Background(), o); err != nil {
					t.Error(err)
					return
				}
				if o.ran.Load() != 1 {
					t.Errorf("op %d returned after running %d times", o.n, o.ran.Load())
					return
				}
				if o.batch > 8 {
					t.Errorf("batch of %d, max 8", o.batch)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, o := range ops {
		if o == nil || o.ran.Load() != 1 {
			t.Fatal("an operation did not run exactly once")
		}
	}
	if overlaps.Load() != 0 {
		t.Fatalf("%d batches ran while another was running", overlaps.Load())
	}
	if b := batches.Load(); b >= int64(len(ops)) {
		t.Fatalf("%d batches for %d operations: none were shared", b, len(ops))
	}
	t.Logf("%d operations in %d batches", len(ops), batches.Load())
}

// TestGroupRunsAloneInline: with nothing running, Do runs the operation
// on the caller's goroutine.
func TestGroupRunsAloneInline(t *testing.T) {
	var caller, runner int64
	g := &Group[*op]{Run: func([]*op) { runner = goid() }}
	caller = goid()
	if err := g.Do(context.Background(), &op{}); err != nil {
		t.Fatal(err)
	}
	if caller != runner {
		t.Fatal("a lone operation ran on another goroutine")
	}
}

// TestGroupCancelledWhileQueued: an operation whose context ends while it
// waits in the queue never runs, and the others still do.
func TestGroupCancelledWhileQueued(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var runs atomic.Int32
	g := &Group[*op]{Run: func(b []*op) {
		for _, o := range b {
			o.ran.Add(1)
		}
		if runs.Add(1) == 1 {
			started <- struct{}{}
			<-release // the first batch holds until told
		}
	}}
	first := &op{}
	go g.Do(context.Background(), first)
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancelled, later := &op{}, &op{}
	errc := make(chan error, 2)
	go func() { errc <- g.Do(ctx, cancelled) }()
	go func() { errc <- g.Do(context.Background(), later) }()
	time.Sleep(20 * time.Millisecond) // both queued
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled op: %v", err)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if cancelled.ran.Load() != 0 || later.ran.Load() != 1 {
		t.Fatalf("cancelled ran %d times (want 0), later %d (want 1)", cancelled.ran.Load(), later.ran.Load())
	}
	g.Close()
	if err := g.Do(context.Background(), &op{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close: %v", err)
	}
}

// TestGroupCancelRacesHandOver: contexts that end at random moments,
// including while the goroutine is being handed the next batch, never
// leave the queue without a runner (the test would hang), never report an
// operation done that did not run, and never run one twice.
func TestGroupCancelRacesHandOver(t *testing.T) {
	g := &Group[*op]{Max: 4, Run: func(b []*op) {
		for _, o := range b {
			o.ran.Add(1)
		}
		time.Sleep(20 * time.Microsecond)
	}}
	var wg sync.WaitGroup
	var bad atomic.Int64
	ops := make(chan *op, 16*300)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration((w*7+i)%50)*time.Microsecond)
				o := &op{}
				err := g.Do(ctx, o)
				cancel()
				if err == nil && o.ran.Load() != 1 {
					bad.Add(1)
				}
				ops <- o
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("stuck: a queue was left without a runner")
	}
	if bad.Load() != 0 {
		t.Fatalf("%d operations reported done without having run once", bad.Load())
	}
	g.Close() // waits for the last batch
	close(ops)
	for o := range ops {
		if o.ran.Load() > 1 {
			t.Fatal("an operation ran twice")
		}
	}
}

func goid() int64 {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	var id int64
	fmt.Sscanf(s, "goroutine %d ", &id)
	return id
}

// TestGroupCancelAtHandOver aims at one window: the runner hands the next
// batch to a goroutine whose context ends at that moment. That goroutine
// must still run the batch, or the operations queued behind it wait for
// ever.
func TestGroupCancelAtHandOver(t *testing.T) {
	for i := range 500 {
		release := make(chan struct{})
		started := make(chan struct{})
		var runs atomic.Int32
		g := &Group[*op]{Run: func(b []*op) {
			for _, o := range b {
				o.ran.Add(1)
			}
			if runs.Add(1) == 1 {
				close(started)
				<-release
			}
		}}
		go g.Do(context.Background(), &op{})
		<-started
		ctx, cancel := context.WithCancel(context.Background())
		a, b := &op{}, &op{}
		errA, errB := make(chan error, 1), make(chan error, 1)
		go func() { errA <- g.Do(ctx, a) }()
		for queued(g) < 1 {
			runtime.Gosched()
		}
		go func() { errB <- g.Do(context.Background(), b) }()
		for queued(g) < 2 {
			runtime.Gosched()
		}
		go cancel()
		close(release)
		select {
		case err := <-errB:
			if err != nil || b.ran.Load() != 1 {
				t.Fatalf("iteration %d: b: %v, ran %d times", i, err, b.ran.Load())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("iteration %d: stuck after a cancel at the hand-over", i)
		}
		if err := <-errA; err == nil && a.ran.Load() != 1 {
			t.Fatalf("iteration %d: a reported done, but ran %d times", i, a.ran.Load())
		}
	}
}

func queued(g *Group[*op]) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// TestGroupCallerLeavesStuckBatch: a caller whose operation is in a batch
// that another goroutine is running, and is stuck, gets its context's
// error at once instead of waiting for the batch.
func TestGroupCallerLeavesStuckBatch(t *testing.T) {
	gate1, gate2 := make(chan struct{}), make(chan struct{})
	inSecond := make(chan struct{})
	var runs atomic.Int32
	g := &Group[*op]{Run: func(b []*op) {
		switch runs.Add(1) {
		case 1:
			<-gate1
		case 2:
			close(inSecond)
			<-gate2 // stuck until the test says
		}
		for _, o := range b {
			o.ran.Add(1)
		}
	}}
	go g.Do(context.Background(), &op{})
	for runs.Load() == 0 {
		runtime.Gosched()
	}
	a, b := &op{}, &op{}
	go g.Do(context.Background(), a)
	for queued(g) < 1 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithCancel(context.Background())
	errB := make(chan error, 1)
	go func() { errB <- g.Do(ctx, b) }()
	for queued(g) < 2 {
		runtime.Gosched()
	}
	close(gate1) // the first batch ends; a's goroutine runs [a, b]
	<-inSecond
	cancel()
	select {
	case err := <-errB:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("b: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b waited for a stuck batch after its context ended")
	}
	close(gate2)
	g.Close()
	if a.ran.Load() != 1 {
		t.Fatalf("a ran %d times", a.ran.Load())
	}
}

// BenchmarkGroupLone: one caller at a time, the light-load case, where
// every operation runs its own batch.
func BenchmarkGroupLone(b *testing.B) {
	g := &Group[*op]{Max: 256, Run: func(ops []*op) {
		for _, o := range ops {
			o.ran.Add(1)
		}
	}}
	o := &op{}
	b.ReportAllocs()
	for b.Loop() {
		g.Do(context.Background(), o)
	}
}
