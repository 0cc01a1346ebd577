package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/sqlite"
)

// TestRefusedRowAfterStaging: a row the table refuses (NOT NULL, CHECK)
// in the statements that apply the staging table is bad input, exit 2,
// not a retryable failure; nothing changes.
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
	spec := idem.LoadSpec{Table: "narrow", Strategy: idem.Upsert, Key: []string{"id"}}
	if _, err := conformance.LoadCSV(t, tg, spec, "a.csv", "id,v\n1,abc\n"); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"long.csv": "id,v\n1,abc\n2,abcdef\n", "null.csv": "id,v\n1,abc\n3,\n"} {
		if _, err := conformance.LoadCSV(t, tg, spec, name, body); !idem.IsInputError(err) || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("%s: %v, want an input error", name, err)
		}
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM narrow").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after the refused loads: %d (%v), want 1", n, err)
	}
}
