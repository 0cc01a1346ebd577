package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/postgres"
)

// TestGroupCommit: concurrent claims and completions share commits, and
// each caller still gets exactly its own answer: its own key claimed once,
// its payload replayed, a stale token fenced off, one winner among racers
// for a single key, and a write the server rejects fails alone.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s := openKeys(t, freshSchema(t))
	defer s.Close()
	const n, racers, bad = 300, 100, 5
	req := func(key string) idem.ClaimRequest {
		return idem.ClaimRequest{Scope: "gc", Key: key, Fingerprint: "fp-" + key, Lease: time.Minute, TTL: time.Hour}
	}
	before := postgres.Commits(s)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n+racers+bad)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			key := fmt.Sprintf("k%d", i)
			r, err := s.Claim(ctx, req(key))
			if err != nil || r.Status != idem.StatusClaimed || r.Attempt != 1 {
				errs <- fmt.Errorf("%s: claim %+v %v", key, r, err)
				return
			}
			if err := s.Complete(ctx, "gc", key, "not-"+r.Token, []byte("x"), time.Hour); !errors.Is(err, idem.ErrLost) {
				errs <- fmt.Errorf("%s: complete with a stale token: %v, want ErrLost", key, err)
			}
			if err := s.Complete(ctx, "gc", key, r.Token, []byte("payload of "+key), time.Hour); err != nil {
				errs <- fmt.Errorf("%s: complete: %v", key, err)
			}
		}()
	}
	// PostgreSQL text cannot hold NUL: the server rejects these claims,
	// and must reject only them.
	for i := range bad {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := s.Claim(ctx, req(fmt.Sprintf("bad\x00%d", i))); !idem.IsStoreError(err) {
				errs <- fmt.Errorf("claim of a NUL key: %v, want a store error", err)
			}
		}()
	}
	var mu sync.Mutex
	wins := 0
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := s.Claim(ctx, req("shared"))
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if r.Status == idem.StatusClaimed {
				wins++
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if wins != 1 {
		t.Errorf("%d racers claimed one key, want exactly 1", wins)
	}
	writes := uint64(n*3 + racers + bad)
	commits := postgres.Commits(s) - before
	if commits*2 > writes {
		t.Errorf("%d writes took %d commits: concurrent writes were not grouped", writes, commits)
	}
	t.Logf("%d writes in %d batches", writes, commits)
	for i := range n {
		key := fmt.Sprintf("k%d", i)
		r, err := s.Claim(ctx, req(key))
		if err != nil || r.Status != idem.StatusDone || !bytes.Equal(r.Payload, []byte("payload of "+key)) {
			t.Fatalf("%s: replay %v %q %v", key, r.Status, r.Payload, err)
		}
	}
}
