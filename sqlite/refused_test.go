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

// TestEvolveCaseOnlyDifference: --evolve with an input column that differs
// from the table's only by case is bad input (exit 2), not a retryable
// failure, and leaves the table as it was.
func TestEvolveCaseOnlyDifference(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	tg, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	spec := idem.LoadSpec{Table: "cs", Strategy: idem.Upsert, Key: []string{"id"}, Create: true}
	if _, err := conformance.LoadCSV(t, tg, spec, "a.csv", "id,V\n1,x\n"); err != nil {
		t.Fatal(err)
	}
	before, err := idem.FingerprintOf(context.Background(), tg, "cs", nil)
	if err != nil {
		t.Fatal(err)
	}
	spec.Evolve = true
	_, err = conformance.LoadCSV(t, tg, spec, "b.csv", "id,v\n1,y\n")
	if idem.ExitCode(err) != idem.ExitBadInput || !strings.Contains(err.Error(), "letter case") {
		t.Fatalf("load: %v (exit %d), want exit 2 naming the case", err, idem.ExitCode(err))
	}
	if after, _ := idem.FingerprintOf(context.Background(), tg, "cs", nil); after != before {
		t.Fatal("the table changed")
	}
}
