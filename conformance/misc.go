package conformance

import (
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem"
)

// testDeterminism loads the same input with the same execution date on two
// different wall-clock days: the rows written must be identical.
func testDeterminism(t *testing.T, b Backend) {
	tg, _ := open(t, b)
	in := writeFile(t, "d.csv", "id,v\n1,a\n2,b\n")
	var fps []idem.Fingerprint
	for i, day := range []string{"2024-03-01T08:00:00Z", "2031-11-30T23:59:59Z"} {
		now, _ := time.Parse(time.RFC3339, day)
		s := spec([]string{"det_a", "det_b"}[i], idem.Upsert, "id", "")
		s.ExecutionDate = "2024-01-05"
		s.Stamps = []idem.Stamp{{Column: "loaded_for", Value: "2024-01-05"}}
		s.Now = func() time.Time { return now }
		mustLoad(t, tg, s, in)
		fps = append(fps, fp(t, tg, s.Table, nil))
	}
	if fps[0] != fps[1] {
		t.Fatalf("same execution date, different wall clock, different rows: %v vs %v", fps[0], fps[1])
	}
}

// testTypes checks inference and that every type round-trips canonically.
func testTypes(t *testing.T, b Backend) {
	tg, _ := open(t, b)
	in := "i,n,b,d,ts,s\n" +
		"1,1.50,true,2024-01-05,2024-01-05T10:00:00Z,\"x\"\n" +
		"-2,3,f,2024-02-29,2024-01-05 12:30:00+02:00,\"\"\n" +
		"3,1e3,false,2024-12-31,2024-01-05T10:00:00.123456Z,\n"
	mustLoad(t, tg, spec("types", idem.Upsert, "i", ""), writeFile(t, "t.csv", in))
	schema, err := tg.Describe(ctxb(), "types")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]idem.Type{"i": idem.TypeInteger, "n": idem.TypeText, "b": idem.TypeBoolean, "d": idem.TypeDate, "ts": idem.TypeTimestamp, "s": idem.TypeText}
	for _, c := range schema {
		if want[c.Name] != c.Type {
			t.Errorf("column %s inferred %s, want %s", c.Name, c.Type, want[c.Name])
		}
	}
	// n holds 1e3, which inference keeps as text; load numbers alone.
	mustLoad(t, tg, spec("nums", idem.Upsert, "i", ""), writeFile(t, "n.csv", "i,n\n1,1.50\n2,-0.0\n3,12345678901234567890.123456789\n"))
	rows := strings.Join(rowsOf(t, tg, "nums"), "\n")
	for _, w := range []string{`n="1.5"`, `n="0"`, `n="12345678901234567890.123456789"`} {
		if !strings.Contains(rows, w) {
			t.Errorf("numeric not canonical: want %s in\n%s", w, rows)
		}
	}
	rows = strings.Join(rowsOf(t, tg, "types"), "\n")
	for _, w := range []string{`ts="2024-01-05T10:30:00Z"`, `ts="2024-01-05T10:00:00.123456Z"`, `b="false"`, `s=""`, `s=NULL`, `d="2024-02-29"`} {
		if !strings.Contains(rows, w) {
			t.Errorf("want %s in\n%s", w, rows)
		}
	}
}

func testEvolve(t *testing.T, b Backend) {
	tg, _ := open(t, b)
	mustLoad(t, tg, spec("ev", idem.Upsert, "id", ""), writeFile(t, "a.csv", "id,v\n1,a\n"))
	s := spec("ev", idem.Upsert, "id", "")
	s.Evolve = true
	r := mustLoad(t, tg, s, writeFile(t, "b.csv", "id,v,w\n1,a,10\n2,b,20\n"))
	if r.Inserted != 1 || r.Updated != 1 {
		t.Fatalf("evolve: %+v", got(r))
	}
	schema, _ := tg.Describe(ctxb(), "ev")
	if i := schema.Index("w"); i < 0 || schema[i].Type != idem.TypeInteger {
		t.Fatalf("evolve did not add w as integer: %v", schema)
	}
	// A partition idem swapped before, evolved by the next swap: the
	// load alters the table, so nothing may read it from another
	// connection meanwhile (that read would wait for the load forever).
	part := spec("evp", idem.ReplacePartition, "", "day=2024-01-01")
	mustLoad(t, tg, part, writeFile(t, "p1.csv", "id,day\n1,2024-01-01\n"))
	part.Evolve = true
	done := make(chan error, 1)
	go func() {
		_, err := load(t, tg, part, writeFile(t, "p2.csv", "id,day,w\n1,2024-01-01,5\n2,2024-01-01,6\n"))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("evolving swap: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("evolving swap of a partition loaded before did not finish in a minute")
	}
	if f := fp(t, tg, "evp", nil); f.Rows != 2 {
		t.Fatalf("evolving swap left %d rows, want 2", f.Rows)
	}
}

func testDryRun(t *testing.T, b Backend) {
	tg, _ := open(t, b)
	s := spec("dry", idem.Upsert, "id", "")
	s.DryRun = true
	r := mustLoad(t, tg, s, writeFile(t, "a.csv", "id,v\n1,a\n2,b\n"))
	if r.Inserted != 2 || !r.DryRun {
		t.Fatalf("dry run result: %+v", got(r))
	}
	if _, err := tg.Describe(ctxb(), "dry"); err == nil {
		t.Fatal("dry run created the table")
	}
	if runs, _ := tg.Runs(ctxb(), idem.RunFilter{}); len(runs) != 0 {
		t.Fatal("dry run wrote the ledger")
	}
}
