package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemhq/idem"
)

// TestWALBounded: under a steady stream of claims and completions (2,000
// requests a second, as in bench/serve.sh, each one a claim, a completion
// and a replay's read), the WAL file stays near the soft limit instead of
// growing with every commit (SQLite's automatic checkpoint is off on the
// writer, so without the checkpointer it would grow by some 10,000 pages
// a second), and the writer never needs the blocking TRUNCATE fallback.
// Then, with no pause between requests at all, the hard limit holds.
func TestWALBounded(t *testing.T) {
	t.Run("steady", func(t *testing.T) { testWALBounded(t, 2000, 100000, 2000, 2) })
	t.Run("flat-out", func(t *testing.T) { testWALBounded(t, 300, 1500, 0, 2) })
}

// testWALBounded runs 16 writers at rate requests a second in all (0: no
// pause), and checks the WAL against soft pages (and no TRUNCATE) when
// the hard limit is out of reach, against hard pages otherwise.
func testWALBounded(t *testing.T, soft, hard int64, rate int, limitFactor int64) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := OpenKeyStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.ckpt.softPages, s.ckpt.hardPages = soft, hard
	// As OpenKeyStore does for its own soft limit.
	if _, err := s.db.Exec(fmt.Sprintf("PRAGMA journal_size_limit=%d", walBytes(soft))); err != nil {
		t.Fatal(err)
	}

	var maxWAL atomic.Int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > maxWAL.Load() {
				maxWAL.Store(fi.Size())
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	ctx := context.Background()
	payload := make([]byte, 1000)
	var wg sync.WaitGroup
	var errs atomic.Int64
	start := time.Now()
	deadline := start.Add(3 * time.Second)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				if rate > 0 {
					// request i of writer w is due at (i*16+w)/rate.
					time.Sleep(time.Until(start.Add(time.Duration(i*16+w) * time.Second / time.Duration(rate))))
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				r, err := s.Claim(ctx, idem.ClaimRequest{Scope: "s", Key: key, Fingerprint: "f", Lease: time.Minute, TTL: time.Hour, Takeover: true})
				if err == nil {
					err = s.Complete(ctx, "s", key, r.Token, payload, time.Hour)
				}
				if err == nil {
					_, err = s.Claim(ctx, idem.ClaimRequest{Scope: "s", Key: key, Fingerprint: "f", Lease: time.Minute, TTL: time.Hour, Takeover: true})
				}
				if err != nil {
					errs.Add(1)
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-watched
	c := s.ckpt
	pages := (maxWAL.Load() - 32) / (4096 + 24)
	t.Logf("WAL at most %d pages (%d bytes); checkpoints: %d background, %d by the writer (%v in all), %d truncating",
		pages, maxWAL.Load(), c.background.Load(), c.writerRuns.Load(), time.Duration(c.writerTime.Load()), c.truncates.Load())
	if c.writerRuns.Load()+c.truncates.Load() == 0 {
		t.Errorf("the writer never checkpointed: the burst did not reach the soft limit, so the test tested nothing")
	}
	limit := min(soft, hard) * limitFactor
	if hard < 10*soft {
		limit = hard * limitFactor
	} else if c.truncates.Load() != 0 {
		t.Errorf("%d blocking TRUNCATE checkpoints, want none", c.truncates.Load())
	}
	if pages > limit {
		t.Errorf("the WAL grew to %d pages, want at most %d", pages, limit)
	}
}
