package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem"
)

// TestCheckpointStalls is a measurement, not a check (set
// IDEM_BENCH_SQLITE_STALLS=1, run under flock /work/bench.lock on a shared
// machine): claims and completions at 2,000 requests a second for 8 s,
// alternating SQLite's automatic checkpoint inside the commit (the
// writer's wal_autocheckpoint=1000, the checkpointer idle) with the
// checkpointer, and logs the latency of claim+completion.
func TestCheckpointStalls(t *testing.T) {
	if os.Getenv("IDEM_BENCH_SQLITE_STALLS") == "" {
		t.Skip("a measurement: set IDEM_BENCH_SQLITE_STALLS=1")
	}
	for round := 0; round < 3; round++ {
		for _, legacy := range []bool{round%2 == 0, round%2 != 0} {
			path := filepath.Join(t.TempDir(), "k.db")
			s, err := OpenKeyStore(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			if legacy {
				s.ckpt.softPages, s.ckpt.hardPages = 1<<40, 1<<40
				s.ckpt.minGap = time.Hour
				if _, err := s.db.Exec("PRAGMA wal_autocheckpoint=1000"); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			var lat []time.Duration
			ctx := context.Background()
			var wg sync.WaitGroup
			start := time.Now()
			n := 2000 * 8
			for i := 0; i < n; i++ {
				due := start.Add(time.Duration(i) * time.Second / 2000)
				time.Sleep(time.Until(due))
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := fmt.Sprintf("k%d", i)
					t0 := time.Now()
					r, err := s.Claim(ctx, idem.ClaimRequest{Scope: "POST /charge abc", Key: key, Fingerprint: "f", Lease: time.Minute, TTL: time.Hour, Takeover: true})
					if err == nil {
						err = s.Complete(ctx, "POST /charge abc", key, r.Token, make([]byte, 150), time.Hour)
					}
					if err != nil {
						t.Error(err)
					}
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}()
			}
			wg.Wait()
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			fi, _ := os.Stat(path + "-wal")
			t.Logf("autocheckpoint in the commit=%v: claim+complete ms p50 %.2f p99 %.2f p99.9 %.2f max %.2f; ckpt bg %d writer %d (%v) trunc %d; wal %d KB",
				legacy, q(.5), q(.99), q(.999), q(1), s.ckpt.background.Load(), s.ckpt.writerRuns.Load(), time.Duration(s.ckpt.writerTime.Load()), s.ckpt.truncates.Load(), fi.Size()>>10)
			s.Close()
		}
	}
}
