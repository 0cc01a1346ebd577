package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/sqlite"
)

func count(t *testing.T, path, q string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSweepWalksPrimaryKey: the sweep reads the table in windows along
// its primary key, deletes the expired records of each window, keeps the
// live ones, and comes back to the start after the end. The file starts
// with the expires_at index of earlier versions, which opening drops.
func TestSweepWalksPrimaryKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`CREATE TABLE idem_keys (scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
		token TEXT NOT NULL, done INTEGER NOT NULL, attempt INTEGER NOT NULL, lease_until INTEGER NOT NULL,
		expires_at INTEGER NOT NULL, completed_at INTEGER, payload BLOB, PRIMARY KEY (scope, key)) WITHOUT ROWID;
		CREATE INDEX idem_keys_expires ON idem_keys (expires_at)`); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := sqlite.OpenKeyStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := count(t, path, `SELECT count(*) FROM sqlite_master WHERE name = 'idem_keys_expires'`); n != 0 {
		t.Fatalf("the expires_at index is still there")
	}
	// Expired and live keys interleave in key order, in two scopes.
	const total = 500
	live := map[string]bool{}
	for i := range total {
		scope, key := fmt.Sprintf("POST /s%d", i%2), fmt.Sprintf("k%04d", i)
		ttl := time.Millisecond
		if i%5 == 0 {
			ttl = time.Hour
			live[scope+" "+key] = true
		}
		r, err := s.Claim(ctx, idem.ClaimRequest{Scope: scope, Key: key, Fingerprint: "fp", Lease: time.Millisecond, TTL: ttl})
		if err != nil || r.Status != idem.StatusClaimed {
			t.Fatalf("claim %s: %v %v", key, r.Status, err)
		}
	}
	time.Sleep(20 * time.Millisecond)

	first, err := sqlite.SweepOnce(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	// 64 records read, four in five of them expired.
	if first == 0 || first > 64 {
		t.Fatalf("first window of 64 deleted %d records", first)
	}
	deleted := first
	for range 2 * total / 64 { // past the end and round again
		n, err := sqlite.SweepOnce(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		deleted += n
	}
	if want := total - len(live); deleted != want {
		t.Fatalf("deleted %d records, want the %d expired ones", deleted, want)
	}
	if n := count(t, path, `SELECT count(*) FROM idem_keys`); n != len(live) {
		t.Fatalf("%d records left, want %d", n, len(live))
	}
	if n := count(t, path, `SELECT count(*) FROM idem_keys WHERE expires_at > unixepoch('now') * 1000`); n != len(live) {
		t.Fatalf("%d live records left, want %d", n, len(live))
	}
}

// TestSweepSparesRetakenKey: a key read as expired but claimed again
// before the delete keeps its new record.
func TestSweepSparesRetakenKey(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.OpenKeyStore(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req := idem.ClaimRequest{Scope: "s", Key: "k", Fingerprint: "fp", Lease: time.Millisecond, TTL: time.Millisecond}
	if _, err := s.Claim(ctx, req); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	req.Lease, req.TTL = time.Minute, time.Hour
	if r, err := s.Claim(ctx, req); err != nil || r.Status != idem.StatusClaimed {
		t.Fatalf("claim of the expired key: %v %v", r.Status, err)
	}
	if n, err := sqlite.DeleteExpired(s, "s", "k"); err != nil || n != 0 {
		t.Fatalf("deleted %d (%v), want the retaken record kept", n, err)
	}
	if r, err := s.Claim(ctx, req); err != nil || r.Status != idem.StatusHeld {
		t.Fatalf("after the sweep: %v %v, want held", r.Status, err)
	}
}
