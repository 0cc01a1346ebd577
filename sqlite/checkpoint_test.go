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

// TestWALBounded: under a steady burst of claims and completions, with
// claims reading alongside, the WAL file stays near the soft limit instead
// of growing with every commit (SQLite's automatic checkpoint is off on
// the writer, so without the checkpointer it would grow without end), and
// the writer never needs the blocking TRUNCATE fallback.
func TestWALBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := OpenKeyStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const soft, hard = 300, 100000
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
	deadline := time.Now().Add(3 * time.Second)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
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
	if c.writerRuns.Load() == 0 {
		t.Errorf("the writer never checkpointed: the burst did not reach the soft limit, so the test tested nothing")
	}
	if pages > 4*soft {
		t.Errorf("the WAL grew to %d pages, want at most %d (4 × the soft limit)", pages, 4*soft)
	}
	if c.truncates.Load() != 0 {
		t.Errorf("%d blocking TRUNCATE checkpoints, want none", c.truncates.Load())
	}
}
