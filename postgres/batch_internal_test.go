package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/idemhq/idem/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// TestRolledBackBatchLeavesNoClaim: when a later statement's error rolls
// a batch back, each op runs again alone, and a claim whose key another
// caller took in between must come out "not claimed", not keep the
// "inserted" its rolled-back statement had reported. Another instance
// holds an uncommitted claim of J while our batch claims K then J, then
// claims K itself: a deadlock, which PostgreSQL resolves by aborting our
// batch (its backend has waited longer, so it detects the cycle first).
// The old code then told the caller it held K while the row was the other
// instance's: both would have run the request.
func TestRolledBackBatchLeavesNoClaim(t *testing.T) {
	u, _ := pgtest.FreshSchema(t)
	ctx := context.Background()
	s, err := OpenKeyStore(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	ins := `INSERT INTO idem_keys (scope, key, fingerprint, token, done, attempt, lease_until, expires_at)
	VALUES ('sc', $1, 'fp', 'OTHER', false, 1, now() + interval '1 minute', now() + interval '1 hour')`
	if _, err := tx.Exec(ctx, ins, "J"); err != nil {
		t.Fatal(err)
	}
	claim := func(k string) *op {
		return &op{ctx: ctx, done: make(chan struct{}), kind: opClaim, scope: "sc", key: k, fp: "fp", token: "MINE-" + k, lease: 60000, ttl: 3600000}
	}
	k, j := claim("K"), claim("J")
	ran := make(chan struct{})
	go func() { s.writes.run([]*op{k, j}); close(ran) }()
	time.Sleep(300 * time.Millisecond) // the batch has inserted K and waits for J
	if _, err := tx.Exec(ctx, ins, "K"); err != nil {
		t.Fatalf("the other instance's claim of K failed (%v): the deadlock went the other way, so this run cannot test the rerun", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	<-ran
	var tok string
	if err := s.pool.QueryRow(ctx, `SELECT token FROM idem_keys WHERE scope = 'sc' AND key = 'K'`).Scan(&tok); err != nil {
		t.Fatal(err)
	}
	if tok != "OTHER" {
		t.Fatalf("K's row holds token %q, want the other instance's", tok)
	}
	if k.err != nil || k.ok {
		t.Errorf("claim of K after the rollback: ok=%v err=%v, want not claimed (the row is the other instance's)", k.ok, k.err)
	}
	if j.err != nil || j.ok {
		t.Errorf("claim of J: ok=%v err=%v, want not claimed", j.ok, j.err)
	}
}
