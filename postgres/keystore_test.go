package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/postgres"
)

func openKeys(t *testing.T, u string) *postgres.KeyStore {
	t.Helper()
	s, err := postgres.OpenKeyStore(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestKeyStore(t *testing.T) {
	base := freshSchema(t)
	conformance.RunKeyStore(t, keyStoreBackend("postgres", base, false))
}

// TestKeyStoreWriteFirst runs the suite with every claim inserting first.
// A store only does that for keys it has not claimed lately, so without
// this run the suite's repeats (replays, conflicts, mismatches, takeovers)
// would only ever be read first.
func TestKeyStoreWriteFirst(t *testing.T) {
	base := freshSchema(t)
	conformance.RunKeyStore(t, keyStoreBackend("postgres-write-first", base, true))
}

// keyStoreBackend opens stores on base, and cuttable ones through a TCP
// forwarder the suite can cut.
func keyStoreBackend(name, base string, writeFirst bool) conformance.KeyStoreBackend {
	open := func(t *testing.T, u string) idem.KeyStore {
		s := openKeys(t, u)
		if writeFirst {
			postgres.WriteFirst(s)
		}
		return s
	}
	return conformance.KeyStoreBackend{
		Name: name,
		Open: func(t *testing.T) idem.KeyStore { return open(t, base) },
		OpenCuttable: func(t *testing.T) (idem.KeyStore, func()) {
			u, err := url.Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			addr, cut := conformance.TCPProxy(t, u.Host)
			u.Host = addr
			return open(t, u.String()), cut
		},
	}
}

// TestKeyStoreAsyncClaims runs the suite with ?async_claims=true.
func TestKeyStoreAsyncClaims(t *testing.T) {
	base := freshSchema(t) + "&async_claims=true"
	if _, err := postgres.OpenKeyStore(context.Background(), base+"x"); !idem.IsInputError(err) {
		t.Fatalf("async_claims=truex: %v, want bad input", err)
	}
	conformance.RunKeyStore(t, keyStoreBackend("postgres-async-claims", base, false))
}

// TestKeyStoreLooksUpByKeyOnceTheTableGrows: the key store's statements
// are prepared while idem_keys is empty, and their cached plans must still
// find a row by its primary key once the table holds many. An earlier
// version batched writes through unnest() joins whose cached plan, made
// for the empty table, scanned the table whole for every batch: latency
// then grew with every key stored (p50 +12 ms per 5 s at 2,000 req/s).
// The test counts the rows the server read by scanning idem_keys, from
// its statistics.
func TestKeyStoreLooksUpByKeyOnceTheTableGrows(t *testing.T) {
	// One connection, so the burst runs the statements the test has
	// warmed up, and the counters it reads include them.
	s := openKeys(t, freshSchema(t)+"&pool_max_conns=1")
	defer s.Close()
	// Statistics decide plans here, not autovacuum; and changing the
	// setting later would invalidate the cached plans.
	if err := postgres.ExecForTest(s, `ALTER TABLE idem_keys SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}
	// One caller at a time, past the server's five custom plans, so the
	// connection caches generic plans made for the empty table.
	ctx := context.Background()
	for i := range 30 {
		key := fmt.Sprintf("warm%d", i)
		r, err := s.Claim(ctx, idem.ClaimRequest{Scope: "warm", Key: key, Fingerprint: "f", Lease: time.Minute, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Complete(ctx, "warm", key, r.Token, []byte("x"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	const filler = 50_000
	if err := postgres.ExecForTest(s, `INSERT INTO idem_keys (scope, key, fingerprint, token, done, attempt, lease_until, expires_at)
SELECT 'filler', g::text, 'f', '', true, 1, now(), now() + interval '1 hour' FROM generate_series(1, $1) g`, filler); err != nil {
		t.Fatal(err)
	}
	stats := func() (seqRead int64) {
		t.Helper()
		// The backend sends its counters when the statement that asks
		// for it ends: the next statement sees them.
		if err := postgres.QueryRowForTest(s, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		if err := postgres.QueryRowForTest(s, `SELECT coalesce(seq_tup_read, 0)
FROM pg_stat_user_tables WHERE relid = 'idem_keys'::regclass`, &seqRead); err != nil {
			t.Fatal(err)
		}
		return seqRead
	}
	seq0 := stats()
	const n = 300
	conformance.Burst(t, s, "grown", n, 20)
	seq := stats()
	if seq-seq0 >= filler {
		t.Fatalf("%d rows read by sequential scans during %d claims and completions over %d stored keys: a cached plan scans the table", seq-seq0, 2*n, filler)
	}
	t.Logf("%d rows read by sequential scans", seq-seq0)
}
