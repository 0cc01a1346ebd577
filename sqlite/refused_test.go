package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/sqlite"
)

// TestRefusedRowAfterStaging: a row the table refuses (NOT NULL, CHECK)
// in the statements that apply the staging table is bad input at its
// file and line, exit 2, not a retryable failure; nothing changes.
func TestRefusedRowAfterStaging(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE narrow (id INTEGER PRIMARY KEY, v TEXT NOT NULL CHECK (length(v) <= 3))`); err != nil {
		t.Fatal(err)
	}
	tg, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	conformance.RefusedRows(t, tg, "narrow")
}
