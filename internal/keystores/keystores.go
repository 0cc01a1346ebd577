// Package keystores opens any of idem's key stores by URL, for the command
// and the benchmarks alike. It is its own package because the root package
// cannot import the stores that implement its interface.
package keystores

import (
	"context"
	"strings"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/postgres"
	"github.com/idemhq/idem/redis"
	"github.com/idemhq/idem/sqlite"
)

// Open opens a key store by URL: sqlite:PATH, postgres://…, redis://… or
// memory:. An unknown scheme is bad input (exit 2); a store that cannot be
// reached is a StoreError (exit 1).
func Open(ctx context.Context, raw string) (idem.KeyStore, error) {
	switch {
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
		if path == "" {
			return nil, idem.BadInput("%q: sqlite URL needs a path, e.g. sqlite:idem.db", raw)
		}
		return sqlite.OpenKeyStore(ctx, path)
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		return postgres.OpenKeyStore(ctx, raw)
	case strings.HasPrefix(raw, "redis://"), strings.HasPrefix(raw, "rediss://"):
		return redis.Open(ctx, raw)
	case raw == "memory:":
		// Not durable, one process only: for trials and benchmarks.
		return memstore.New(), nil
	}
	scheme, _, ok := strings.Cut(raw, ":")
	if !ok {
		return nil, idem.BadInput("%q is not a key store URL (want sqlite:PATH, postgres://…, redis://… or memory:)", idem.RedactURL(raw))
	}
	return nil, idem.BadInput("unsupported key store scheme %q in %s (want sqlite:, postgres://, redis:// or memory:)", scheme, idem.RedactURL(raw))
}
