package main

import (
	"context"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/keystores"
)

// defaultKeyStore is SPEC.md's embedded default for once and serve.
const defaultKeyStore = "sqlite:idem.db"

// openKeyStore opens a key store by URL, the embedded default when empty.
func openKeyStore(ctx context.Context, raw string) (idem.KeyStore, error) {
	if raw == "" {
		raw = defaultKeyStore
	}
	return keystores.Open(ctx, raw)
}
