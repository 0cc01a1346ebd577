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
	conformance.RunKeyStore(t, keyStoreBackend("postgres", base))
}

// keyStoreBackend opens stores on base, and cuttable ones through a TCP
// forwarder the suite can cut.
func keyStoreBackend(name, base string) conformance.KeyStoreBackend {
	return conformance.KeyStoreBackend{
		Name: name,
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
	}
}

// TestKeyStoreAsyncClaims runs the suite with ?async_claims=true.
func TestKeyStoreAsyncClaims(t *testing.T) {
	base := freshSchema(t) + "&async_claims=true"
	if _, err := postgres.OpenKeyStore(context.Background(), base+"x"); !idem.IsInputError(err) {
		t.Fatalf("async_claims=truex: %v, want bad input", err)
	}
	conformance.RunKeyStore(t, keyStoreBackend("postgres-async-claims", base))
}

// TestKeyStorePlansForCurrentTable: the key store's statements are planned
// for the table as it is at each call. With the default plan cache, the
// batched unnest() statements kept the generic plan made while idem_keys
// was empty, a full scan, and latency grew with every key stored (p50 +12
// ms per 5 s at 2,000 req/s). A plan_cache_mode the user sets in the URL
// wins.
func TestKeyStorePlansForCurrentTable(t *testing.T) {
	u := freshSchema(t)
	s := openKeys(t, u)
	defer s.Close()
	if v, err := postgres.Setting(s, "plan_cache_mode"); err != nil || v != "force_custom_plan" {
		t.Fatalf("plan_cache_mode = %q (%v), want force_custom_plan", v, err)
	}
	s2 := openKeys(t, u+"&plan_cache_mode=auto")
	defer s2.Close()
	if v, err := postgres.Setting(s2, "plan_cache_mode"); err != nil || v != "auto" {
		t.Fatalf("plan_cache_mode from the URL = %q (%v), want auto", v, err)
	}
}
