package main

import (
	"path/filepath"
	"testing"

	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/internal/redistest"
)

// keyStoreURLs lists a store URL per kind for CLI tests: a fresh SQLite
// file, and PostgreSQL and Redis from IDEM_TEST_* (Redis with a key prefix
// of its own). PostgreSQL keys persist between runs, so tests use fresh keys.
func keyStoreURLs(t *testing.T) map[string]string {
	m := map[string]string{"sqlite": "sqlite:" + filepath.Join(t.TempDir(), "keys.db")}
	m["postgres"] = conformance.ServerURL(t, "IDEM_TEST_POSTGRES")
	m["redis"] = redistest.PrefixedURL(t, conformance.ServerURL(t, "IDEM_TEST_REDIS"))
	return m
}
