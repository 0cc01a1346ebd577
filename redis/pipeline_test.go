package redis_test

import (
	"context"
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
	s := open(t, testURL(t))
	defer s.Close()
	before := redis.RoundTrips(s)
	calls := uint64(conformance.Burst(t, s, "pipe", 400, 200))
	trips := redis.RoundTrips(s) - before
	if trips*2 > calls {
		t.Errorf("%d calls took %d round trips: concurrent calls were not pipelined", calls, trips)
	}
	t.Logf("%d calls in %d round trips", calls, trips)
	conformance.BurstReplays(t, s, "pipe", 400)
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

// TestCallerSends: a call that finds no round trip in flight is sent by
// its caller, without a hand-off to a pipeliner; and that caller's
// deadline bounds its wait even when the server stalls.
func TestCallerSends(t *testing.T) {
	ctx := context.Background()
	s := open(t, testURL(t))
	defer s.Close()
	// Once, so that a server whose script cache another test flushed has
	// the scripts again (a NOSCRIPT costs a second round trip).
	for _, k := range []string{"warm1", "warm2"} {
		r, err := s.Claim(ctx, idem.ClaimRequest{Scope: "own", Key: k, Fingerprint: "f", Lease: time.Minute, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Complete(ctx, "own", k, r.Token, []byte("p"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	before, ownBefore := redis.RoundTrips(s), redis.OwnRoundTrips(s)
	for i := range 20 {
		key := fmt.Sprintf("c%d", i)
		r, err := s.Claim(ctx, idem.ClaimRequest{Scope: "own", Key: key, Fingerprint: "f", Lease: time.Minute, TTL: time.Hour})
		if err != nil || r.Status != idem.StatusClaimed {
			t.Fatalf("%s: %+v %v", key, r, err)
		}
		if err := s.Complete(ctx, "own", key, r.Token, []byte("p"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	trips, own := redis.RoundTrips(s)-before, redis.OwnRoundTrips(s)-ownBefore
	if trips != 40 || own != 40 {
		t.Errorf("40 calls one after another: %d round trips, %d sent by their callers; want 40 and 40", trips, own)
	}

	opt, err := goredis.ParseURL(conformance.ServerURL(t, "IDEM_TEST_REDIS"))
	if err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(opt)
	defer raw.Close()
	// The server holds every command for 800 ms.
	if err := raw.Do(ctx, "CLIENT", "PAUSE", "800", "ALL").Err(); err != nil {
		t.Skipf("CLIENT PAUSE: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Claim(short, idem.ClaimRequest{Scope: "own", Key: "paused", Fingerprint: "f", Lease: time.Minute, TTL: time.Hour})
	if err == nil || !idem.IsStoreError(err) {
		t.Errorf("claim on a paused server: %v, want a store error", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("claim with a 100 ms deadline took %v", d)
	}
	time.Sleep(time.Second) // let the pause end for the tests after this one
}
