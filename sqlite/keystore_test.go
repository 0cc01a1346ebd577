package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/sqlite"
)

func TestKeyStore(t *testing.T) {
	runKeyStore(t, false)
}

// TestKeyStoreWriteFirst runs the suite with every claim going to the
// writer first. A store only does that for keys it has not claimed
// lately, so without this run the suite's repeats (replays, conflicts,
// mismatches, takeovers) would only ever be read first.
func TestKeyStoreWriteFirst(t *testing.T) {
	runKeyStore(t, true)
}

func runKeyStore(t *testing.T, writeFirst bool) {
	// All subtests share one file, as processes sharing sqlite:idem.db do.
	path := filepath.Join(t.TempDir(), "keys.db")
	open := func(t *testing.T) *sqlite.KeyStore {
		s, err := sqlite.OpenKeyStore(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		if writeFirst {
			sqlite.WriteFirst(s)
		}
		return s
	}
	conformance.RunKeyStore(t, conformance.KeyStoreBackend{
		Name: "sqlite",
		Open: func(t *testing.T) idem.KeyStore { return open(t) },
		// An embedded store goes "down" when its file can no longer be
		// used; a closed handle is the closest stand-in.
		OpenCuttable: func(t *testing.T) (idem.KeyStore, func()) {
			s := open(t)
			return s, func() { s.Close() }
		},
	})
}

func TestKeyStoreConcurrentOpen(t *testing.T) {
	for round := 0; round < 5; round++ {
		path := filepath.Join(t.TempDir(), "new.db")
		errs := make(chan error, 16)
		for i := 0; i < 16; i++ {
			go func() {
				s, err := sqlite.OpenKeyStore(context.Background(), path)
				if err == nil {
					_, err = s.Claim(context.Background(), idem.ClaimRequest{Scope: "s", Key: "k", Lease: time.Minute, TTL: time.Hour})
					s.Close()
				}
				errs <- err
			}()
		}
		for i := 0; i < 16; i++ {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
