package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

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
