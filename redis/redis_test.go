package redis_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/internal/redistest"
	"github.com/idemhq/idem/redis"
)

// testURL returns IDEM_TEST_REDIS with a key prefix of its own, so tests
// running in parallel against one server never see each other's keys.
func testURL(t *testing.T) string {
	t.Helper()
	return redistest.PrefixedURL(t, conformance.ServerURL(t, "IDEM_TEST_REDIS"))
}

func open(t *testing.T, u string) *redis.KeyStore {
	t.Helper()
	s, err := redis.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestKeyStore(t *testing.T) {
	base := testURL(t)
	conformance.RunKeyStore(t, conformance.KeyStoreBackend{
		Name: "redis",
		Open: func(t *testing.T) idem.KeyStore { return open(t, base) },
		OpenCuttable: func(t *testing.T) (idem.KeyStore, func()) {
			u, _ := url.Parse(base)
			addr, cut := conformance.TCPProxy(t, u.Host)
			u.Host = addr
			return open(t, u.String()), cut
		},
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := redis.Open(ctx, "redis://:s3cret@127.0.0.1:1/0"); err == nil || !idem.IsStoreError(err) {
		t.Fatalf("closed port: %v, want a StoreError", err)
	} else if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("password printed: %v", err)
	}
	if _, err := redis.Open(ctx, "redis://127.0.0.1:6379/notadb"); err == nil || !idem.IsInputError(err) {
		t.Fatalf("bad db: %v, want bad input", err)
	}
}
