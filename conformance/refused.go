package conformance

import (
	"fmt"
	"strings"
	"testing"

	"github.com/idemhq/idem"
)

// RefusedRows checks that a row the table itself refuses (too long for
// its column, or NULL into NOT NULL) is bad input named by its file and
// line, on each path a load writes by, and that nothing of the load is
// left behind. The backend's test creates table first, with its own DDL:
// id an integer primary key, and v a text column that refuses NULL and
// values longer than 3 characters. The refused row sits deep in a
// 1,000-row file, so finding it takes more than a look at the first row.
func RefusedRows(t *testing.T, tg idem.Target, table string) {
	const rows = 1000
	file := func(v string, bad int, badV string) string {
		var b strings.Builder
		b.WriteString("id,v\n")
		for i := 1; i <= rows; i++ {
			if i == bad {
				fmt.Fprintf(&b, "%d,%s\n", i, badV)
				continue
			}
			fmt.Fprintf(&b, "%d,%s\n", i, v)
		}
		return b.String()
	}
	key := []string{"id"}
	for _, tc := range []struct {
		name string
		spec idem.LoadSpec
	}{
		// The row digest sends only changed rows to the delta statements.
		{"upsert", idem.LoadSpec{Strategy: idem.Upsert, Key: key}},
		{"merge", idem.LoadSpec{Strategy: idem.Merge, Key: key}},
		{"insert-missing", idem.LoadSpec{Strategy: idem.InsertMissing, Key: key}},
		// Without it every staged row goes through the strategy's statements.
		{"upsert-no-digest", idem.LoadSpec{Strategy: idem.Upsert, Key: key, NoDigest: true}},
		// A keyless load swaps the table: whole, or row by row in the
		// client with the changed rows streamed or staged.
		{"replace-whole", idem.LoadSpec{Strategy: idem.Replace, NoDigest: true}},
		{"replace-diff", idem.LoadSpec{Strategy: idem.Replace}},
		{"replace-diff-staged", idem.LoadSpec{Strategy: idem.Replace, DiffBuffer: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.Table = table
			base := file("old", 0, "")
			if _, err := LoadCSV(t, tg, spec, "base.csv", base); err != nil {
				t.Fatal(err)
			}
			before := fp(t, tg, table, nil)
			for _, bad := range []struct {
				name, v string
				line    int
			}{
				{"long.csv", "toolong", 702},
				{"null.csv", "", 403},
			} {
				body := file("new", bad.line-1, bad.v)
				if spec.Strategy == idem.InsertMissing {
					// Only new keys are written: the refused row is one.
					body = base + fmt.Sprintf("%d,new\n%d,%s\n", rows+1, rows+2, bad.v)
					bad.line = rows + 3
				}
				_, err := LoadCSV(t, tg, spec, bad.name, body)
				if !idem.IsInputError(err) {
					t.Fatalf("%s: %v, want an input error", bad.name, err)
				}
				if want := fmt.Sprintf("%s:%d", bad.name, bad.line); !strings.Contains(err.Error(), want) {
					t.Errorf("%s: %v, want it at %s", bad.name, err, want)
				}
				if got := fp(t, tg, table, nil); got != before {
					t.Fatalf("%s: the table changed under a refused load", bad.name)
				}
			}
		})
	}
	// Rows the load would not write are never blamed: a duplicate that
	// --dedupe drops, or a row insert-missing skips as its key exists.
	for _, tc := range []struct {
		name string
		spec idem.LoadSpec
		body string
		line int
	}{
		{"dedupe-last", idem.LoadSpec{Strategy: idem.Upsert, Key: key, Dedupe: idem.DedupeLast}, "id,v\n1,\n1,ok\n2,toolong\n", 4},
		{"dedupe-last-no-digest", idem.LoadSpec{Strategy: idem.Upsert, Key: key, Dedupe: idem.DedupeLast, NoDigest: true}, "id,v\n1,\n1,ok\n2,toolong\n", 4},
		{"insert-missing-no-digest", idem.LoadSpec{Strategy: idem.InsertMissing, Key: key, NoDigest: true}, fmt.Sprintf("id,v\n1,\n%d,toolong\n", rows+1), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.Table = table
			if _, err := LoadCSV(t, tg, spec, "base.csv", file("old", 0, "")); err != nil {
				t.Fatal(err)
			}
			before := fp(t, tg, table, nil)
			_, err := LoadCSV(t, tg, spec, "skip.csv", tc.body)
			if want := fmt.Sprintf("skip.csv:%d", tc.line); !idem.IsInputError(err) || !strings.Contains(err.Error(), want) {
				t.Fatalf("%v, want an input error at %s", err, want)
			}
			if got := fp(t, tg, table, nil); got != before {
				t.Fatal("the table changed under a refused load")
			}
		})
	}
}
