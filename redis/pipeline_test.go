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
