// Package pgtest gives tests their own empty PostgreSQL schema on the server
// named by IDEM_TEST_POSTGRES, so parallel tests never see each other's
// tables.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"

	"github.com/idemhq/idem/conformance"
	"github.com/jackc/pgx/v5"
)

// FreshSchema creates a schema that is dropped when the test ends. It
// returns a URL whose search_path points at the schema (for idem and pgx)
// and the schema's name (for psql, which takes it via PGOPTIONS).
func FreshSchema(t *testing.T) (string, string) {
	t.Helper()
	base := conformance.ServerURL(t, "IDEM_TEST_POSTGRES")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "idem_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), schema
}
