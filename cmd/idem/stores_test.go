package main

import (
	"net/url"
	"path/filepath"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
)

// keyStoreURLs lists a store URL per kind for CLI tests: a fresh SQLite
// file, and PostgreSQL and Redis from IDEM_TEST_* (Redis with a key prefix
// of its own). PostgreSQL keys persist between runs, so tests use fresh keys.
func keyStoreURLs(t *testing.T) map[string]string {
	m := map[string]string{"sqlite": "sqlite:" + filepath.Join(t.TempDir(), "keys.db")}
	m["postgres"] = conformance.ServerURL(t, "IDEM_TEST_POSTGRES")
	r, err := url.Parse(conformance.ServerURL(t, "IDEM_TEST_REDIS"))
	if err != nil {
		t.Fatal(err)
	}
	q := r.Query()
	q.Set("prefix", "idemtest:"+idem.NewToken()[:12]+":")
	r.RawQuery = q.Encode()
	m["redis"] = r.String()
	return m
}
