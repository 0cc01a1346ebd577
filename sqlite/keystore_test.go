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
	// All subtests share one file, as processes sharing sqlite:idem.db do.
	path := filepath.Join(t.TempDir(), "keys.db")
	open := func(t *testing.T) *sqlite.KeyStore {
		s, err := sqlite.OpenKeyStore(context.Background(), path)
		if err != nil {
			t.Fatal(err)
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

// TestKeyStoreConcurrentOpen: many processes' worth of handles opening one
// new file at once all succeed (WAL switch and table creation race).
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
