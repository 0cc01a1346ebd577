package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/source"
	"github.com/idemhq/idem/sqlite"
)

// TestRefusedRowAfterStaging: a row the table refuses (NOT NULL, CHECK)
// in the statements that apply the staging table is bad input, exit 2,
// not a retryable failure; nothing changes.
func TestRefusedRowAfterStaging(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "t.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE narrow (id INTEGER PRIMARY KEY, v TEXT NOT NULL CHECK (length(v) <= 3))`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	tg, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	load := func(name, body string) error {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		rr, err := source.Open([]string{file}, nil, source.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer rr.Close()
		_, err = idem.Load(ctx, tg, rr, idem.LoadSpec{Table: "narrow", Strategy: idem.Upsert, Key: []string{"id"},
			RunID: fmt.Sprint(time.Now().UnixNano()), InputDigest: name})
		return err
	}
	if err := load("a.csv", "id,v\n1,abc\n"); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"long.csv": "id,v\n1,abc\n2,abcdef\n", "null.csv": "id,v\n1,abc\n3,\n"} {
		if err := load(name, body); !idem.IsInputError(err) || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("%s: %v, want an input error", name, err)
		}
	}
	db, err = sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM narrow").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after the refused loads: %d (%v), want 1", n, err)
	}
}
