package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/postgres"
)

// TestGroupCommit: concurrent claims and completions share commits, and
// each caller still gets exactly its own answer: its own key claimed once,
// its payload replayed, a stale token fenced off, one winner among racers
// for a single key, and a write the server rejects fails alone.
func TestGroupCommit(t *testing.T) {
	s := openKeys(t, freshSchema(t))
	defer s.Close()
	const n, racers, bad = 300, 100, 5
	before := postgres.Commits(s)
	// PostgreSQL text cannot hold NUL: the server rejects these claims,
	// and must reject only them.
	var nul []func(context.Context) error
	for i := range bad {
		nul = append(nul, func(ctx context.Context) error {
			r := idem.ClaimRequest{Scope: "gc", Key: fmt.Sprintf("bad\x00%d", i), Fingerprint: "f", Lease: time.Minute, TTL: time.Hour}
			if _, err := s.Claim(ctx, r); !idem.IsStoreError(err) {
				return fmt.Errorf("claim of a NUL key: %v, want a store error", err)
			}
			return nil
		})
	}
	writes := uint64(conformance.Burst(t, s, "gc", n, racers, nul...) + bad)
	commits := postgres.Commits(s) - before
	if commits*2 > writes {
		t.Errorf("%d writes took %d commits: concurrent writes were not grouped", writes, commits)
	}
	t.Logf("%d writes in %d batches", writes, commits)
	conformance.BurstReplays(t, s, "gc", n)
}
