package postgres_test

import (
	"context"
	"net/url"
	"testing"

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
	conformance.RunKeyStore(t, conformance.KeyStoreBackend{
		Name: "postgres",
		Open: func(t *testing.T) idem.KeyStore { return openKeys(t, base) },
		OpenCuttable: func(t *testing.T) (idem.KeyStore, func()) {
			u, err := url.Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			addr, cut := conformance.TCPProxy(t, u.Host)
			u.Host = addr
			return openKeys(t, u.String()), cut
		},
	})
}

// TestKeyStoreAsyncClaims runs the suite with ?async_claims=true.
func TestKeyStoreAsyncClaims(t *testing.T) {
	base := freshSchema(t) + "&async_claims=true"
	if _, err := postgres.OpenKeyStore(context.Background(), base+"x"); !idem.IsInputError(err) {
		t.Fatalf("async_claims=truex: %v, want bad input", err)
	}
	conformance.RunKeyStore(t, conformance.KeyStoreBackend{
		Name: "postgres-async-claims",
		Open: func(t *testing.T) idem.KeyStore { return openKeys(t, base) },
		OpenCuttable: func(t *testing.T) (idem.KeyStore, func()) {
			u, err := url.Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			addr, cut := conformance.TCPProxy(t, u.Host)
			u.Host = addr
			return openKeys(t, u.String()), cut
		},
	})
}
