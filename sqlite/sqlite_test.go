package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/sqlite"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Backend{
		Name:   "sqlite",
		NewURL: func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "idem.db") },
		Open: func(ctx context.Context, url string) (idem.Target, error) {
			return sqlite.Open(ctx, url[len("sqlite:"):])
		},
	})
}
