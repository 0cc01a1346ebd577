package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/internal/pgtest"
	"github.com/idemhq/idem/postgres"
	"github.com/idemhq/idem/source"
	"github.com/jackc/pgx/v5"
)

// TestDuplicateKeyIntoTableWithoutKey: a keyed first load into a table the
// user created without a primary key. Rows used to be copied straight in,
// trusting the table to refuse a duplicate key, so both rows of key 1 went
// in silently. The duplicate must be an input error at its line, with
// nothing written, as it is when the table does enforce the key.
func TestDuplicateKeyIntoTableWithoutKey(t *testing.T) {
	conn, tg := userTables(t, `CREATE TABLE nokey (id bigint, v text); CREATE TABLE haskey (id bigint PRIMARY KEY, v text)`)
	for _, table := range []string{"nokey", "haskey"} {
		_, err := conformance.LoadCSV(t, tg, idem.LoadSpec{Table: table, Strategy: idem.Upsert, Key: []string{"id"}}, "dup.csv", "id,v\n1,a\n1,b\n2,c\n")
		if !idem.IsInputError(err) || !strings.Contains(err.Error(), "dup.csv:3") {
			t.Fatalf("%s: %v, want an input error at dup.csv:3", table, err)
		}
		if n := rows(t, conn, table); n != 0 {
			t.Fatalf("%s: %d rows after the refused load, want none", table, n)
		}
	}
}

// userTables opens a target on a fresh schema where ddl has created the
// user's own tables, and a connection to look at them.
func userTables(t *testing.T, ddl string) (*pgx.Conn, *postgres.Target) {
	t.Helper()
	u, _ := pgtest.FreshSchema(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if ddl != "" {
		if _, err := conn.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	tg, err := postgres.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return conn, tg
}

// rows counts table's rows.
func rows(t *testing.T, conn *pgx.Conn, table string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConcurrentFirstPartitionLoads: loads of different partitions of a
// table that does not exist yet, started together, all succeed. Each used
// to create the table, and all but one failed on the catalog's unique
// index (exit 1), although partitions are meant to load side by side.
func TestConcurrentFirstPartitionLoads(t *testing.T) {
	_, tg := userTables(t, "")
	ctx := context.Background()
	dir := t.TempDir()
	const parts = 4
	for round := range 5 {
		table := fmt.Sprintf("fresh%d", round)
		errs := make(chan error, parts)
		start := make(chan struct{})
		for i := range parts {
			day := fmt.Sprintf("2024-01-%02d", i+1)
			file := filepath.Join(dir, fmt.Sprintf("%s-%s.csv", table, day))
			if err := os.WriteFile(file, []byte(fmt.Sprintf("id,d,v\n%d,%s,x\n", i, day)), 0o644); err != nil {
				t.Fatal(err)
			}
			go func() {
				rr, err := source.Open([]string{file}, nil, source.Options{})
				if err != nil {
					errs <- err
					return
				}
				defer rr.Close()
				<-start
				p, _ := idem.ParsePartition("d=" + day)
				_, err = idem.Load(ctx, tg, rr, idem.LoadSpec{Table: table, Strategy: idem.Upsert, Key: []string{"id"}, Partition: p,
					Create: true, RunID: fmt.Sprint(time.Now().UnixNano(), i), InputDigest: file, LockTimeout: time.Minute})
				errs <- err
			}()
		}
		close(start)
		for range parts {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: a first partition load failed: %v", round, err)
			}
		}
	}
}

// TestRefusedRowAfterCopy: a value the table refuses in the statements
// after COPY (the scope was not empty, so rows go through the staging
// table) is bad input, exit 2, not a retryable failure; nothing changes.
func TestRefusedRowAfterCopy(t *testing.T) {
	_, tg := userTables(t, `CREATE TABLE narrow (id bigint PRIMARY KEY, v varchar(3) NOT NULL)`)
	conformance.RefusedRows(t, tg, "narrow")
}
