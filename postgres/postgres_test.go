package postgres_test

import (
	"context"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/internal/pgtest"
	"github.com/idemhq/idem/postgres"
)

// freshSchema creates an empty schema for one test and returns a URL whose
// search_path points at it, so tests never see each other's tables.
func freshSchema(t *testing.T) string {
	t.Helper()
	u, _ := pgtest.FreshSchema(t)
	return u
}

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Backend{
		Name:   "postgres",
		NewURL: freshSchema,
		Open: func(ctx context.Context, url string) (idem.Target, error) {
			return postgres.Open(ctx, url)
		},
	})
}
