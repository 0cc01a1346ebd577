package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/redis"
	goredis "github.com/redis/go-redis/v9"
)

// TestPipelining: many goroutines claiming and completing at once share
// round trips, and every one of them still gets exactly its own answer:
// its own key claimed once, its own payload replayed, a stale token fenced
// off, and one winner among racers for a single key.
func TestPipelining(t *testing.T) {
	ctx := context.Background()
	s := open(t, testURL(t))
	defer s.Close()
	const n, racers = 400, 200
	req := func(key string) idem.ClaimRequest {
		return idem.ClaimRequest{Scope: "pipe", Key: key, Fingerprint: "fp-" + key, Lease: time.Minute, TTL: time.Hour, Takeover: true}
	}
	before := redis.RoundTrips(s)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n+racers)
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
			if err := s.Complete(ctx, "pipe", key, "not-"+r.Token, []byte("x"), time.Hour); !errors.Is(err, idem.ErrLost) {
				errs <- fmt.Errorf("%s: complete with a stale token: %v, want ErrLost", key, err)
			}
			if err := s.Complete(ctx, "pipe", key, r.Token, []byte("payload of "+key), time.Hour); err != nil {
				errs <- fmt.Errorf("%s: complete: %v", key, err)
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
	calls := uint64(n*3 + racers)
	trips := redis.RoundTrips(s) - before
	if trips*2 > calls {
		t.Errorf("%d calls took %d round trips: concurrent calls were not pipelined", calls, trips)
	}
	t.Logf("%d calls in %d round trips", calls, trips)
	for i := range n {
		key := fmt.Sprintf("k%d", i)
		r, err := s.Claim(ctx, req(key))
		if err != nil || r.Status != idem.StatusDone || !bytes.Equal(r.Payload, []byte("payload of "+key)) {
			t.Fatalf("%s: replay %v %q %v", key, r.Status, r.Payload, err)
		}
	}
}

// TestScriptCacheFlushed: a server that lost its scripts (SCRIPT FLUSH,
// a restart, a failover) still runs every call of a pipeline, once.
func TestScriptCacheFlushed(t *testing.T) {
	ctx := context.Background()
	u := testURL(t)
	s := open(t, u)
	defer s.Close()
	opt, err := goredis.ParseURL(conformance.ServerURL(t, "IDEM_TEST_REDIS"))
	if err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(opt)
	defer raw.Close()
	if err := raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("f%d", i)
			r, err := s.Claim(ctx, idem.ClaimRequest{Scope: "flush", Key: key, Fingerprint: "f", Lease: time.Minute, TTL: time.Hour})
			if err != nil || r.Status != idem.StatusClaimed || r.Attempt != 1 {
				t.Errorf("%s: %+v %v", key, r, err)
			}
		}()
	}
	wg.Wait()
}
