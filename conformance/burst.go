package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem"
)

// Burst releases, all at once, n goroutines that each claim their own key,
// try to complete it with a stale token (which must be fenced off) and then
// complete it, racers goroutines that all claim one shared key (exactly
// one must win), and one goroutine per extra function. It returns the
// number of store calls the n and racers goroutines made, for backends that
// check those calls shared round trips or commits; BurstReplays then checks
// every key replays its own payload.
func Burst(t *testing.T, s idem.KeyStore, scope string, n, racers int, extra ...func(ctx context.Context) error) int {
	t.Helper()
	ctx := context.Background()
	req := func(key string) idem.ClaimRequest {
		return idem.ClaimRequest{Scope: scope, Key: key, Fingerprint: "fp-" + key, Lease: time.Minute, TTL: time.Hour}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n+racers+len(extra))
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
			if err := s.Complete(ctx, scope, key, "not-"+r.Token, []byte("x"), time.Hour); !errors.Is(err, idem.ErrLost) {
				errs <- fmt.Errorf("%s: complete with a stale token: %v, want ErrLost", key, err)
			}
			if err := s.Complete(ctx, scope, key, r.Token, []byte("payload of "+key), time.Hour); err != nil {
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
	for _, fn := range extra {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := fn(ctx); err != nil {
				errs <- err
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
	return n*3 + racers
}

// BurstReplays checks that each of a Burst's n keys replays its payload.
func BurstReplays(t *testing.T, s idem.KeyStore, scope string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		key := fmt.Sprintf("k%d", i)
		r, err := s.Claim(ctx, idem.ClaimRequest{Scope: scope, Key: key, Fingerprint: "fp-" + key, Lease: time.Minute, TTL: time.Hour})
		if err != nil || r.Status != idem.StatusDone || !bytes.Equal(r.Payload, []byte("payload of "+key)) {
			t.Fatalf("%s: replay %v %q %v", key, r.Status, r.Payload, err)
		}
	}
}
