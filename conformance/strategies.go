package conformance

import (
	"strings"
	"testing"

	"github.com/idemhq/idem"
)

const (
	v1 = `id,day,amount,name
1,2024-01-01,10.50,a
2,2024-01-01,20,b
3,2024-01-01,,"c, with ""comma"""
4,2024-01-02,40.25,d
5,2024-01-02,50.5,""
6,2024-01-02,60.75,f
`
	// v2: id 2 changed, id 3 gone, id 7 new; 1.5 written as 10.500 is the
	// same number and must not count as a change.
	v2 = `id,day,amount,name
1,2024-01-01,10.500,a
2,2024-01-01,21,b
7,2024-01-01,70,g
4,2024-01-02,40.25,d
5,2024-01-02,50.5,""
6,2024-01-02,60.75,f
`
	v1day1 = `id,day,amount,name
1,2024-01-01,10.50,a
2,2024-01-01,20,b
3,2024-01-01,,"c, with ""comma"""
`
	v2day1 = `id,day,amount,name
1,2024-01-01,10.5,a
2,2024-01-01,21,b
7,2024-01-01,70,g
`
	day2 = `id,day,amount,name
4,2024-01-02,40.25,d
5,2024-01-02,50.5,""
6,2024-01-02,60.75,f
`
)

type counts struct{ ins, upd, del, unch, skip int64 }

func got(r *idem.Result) counts {
	return counts{r.Inserted, r.Updated, r.Deleted, r.Unchanged, r.Skipped}
}

func spec(table string, st idem.Strategy, key string, part string) idem.LoadSpec {
	s := idem.LoadSpec{Table: table, Strategy: st, Create: true}
	if key != "" {
		s.Key = strings.Split(key, ",")
	}
	if part != "" {
		p, _ := idem.ParsePartition(part)
		s.Partition = p
	}
	return s
}

// testStrategies runs every case twice: with the row digest (keyed reruns
// diff in the client and stage only changes) and without it (every
// comparison in the database), so both paths are held to the same results.
func testStrategies(t *testing.T, b Backend) {
	for _, noDigest := range []bool{false, true} {
		name := "digest"
		if noDigest {
			name = "no-digest"
		}
		t.Run(name, func(t *testing.T) { testStrategyCases(t, b, noDigest) })
	}
}

func testStrategyCases(t *testing.T, b Backend, noDigest bool) {
	cases := []struct {
		name       string
		strategy   idem.Strategy
		key, part  string
		setup      []string // loaded first with the same spec (per partition when part != "")
		first, cur string   // first load of this case's scope, then the changed input
		want       counts   // counts of loading cur
		// whole, for keyless swaps, is what loading cur counts when the
		// scope is deleted and rewritten whole (no-digest on a SQL target)
		// instead of compared row by row.
		whole *counts
		end   string // whole table after loading cur
	}{
		{name: "upsert", strategy: idem.Upsert, key: "id", first: v1, cur: v2,
			want: counts{ins: 1, upd: 1, unch: 4},
			end:  "id,day,amount,name\n1,2024-01-01,10.5,a\n2,2024-01-01,21,b\n3,2024-01-01,,\"c, with \"\"comma\"\"\"\n4,2024-01-02,40.25,d\n5,2024-01-02,50.5,\"\"\n6,2024-01-02,60.75,f\n7,2024-01-01,70,g\n"},
		{name: "insert-missing", strategy: idem.InsertMissing, key: "id", first: v1, cur: v2,
			want: counts{ins: 1, unch: 4, skip: 1},
			end:  "id,day,amount,name\n1,2024-01-01,10.5,a\n2,2024-01-01,20,b\n3,2024-01-01,,\"c, with \"\"comma\"\"\"\n4,2024-01-02,40.25,d\n5,2024-01-02,50.5,\"\"\n6,2024-01-02,60.75,f\n7,2024-01-01,70,g\n"},
		{name: "merge", strategy: idem.Merge, key: "id", first: v1, cur: v2,
			want: counts{ins: 1, upd: 1, del: 1, unch: 4}, end: v2},
		{name: "replace-keyed", strategy: idem.Replace, key: "id", first: v1, cur: v2,
			want: counts{ins: 1, upd: 1, del: 1, unch: 4}, end: v2},
		{name: "replace-keyless", strategy: idem.Replace, first: v1, cur: v2,
			want: counts{ins: 2, del: 2, unch: 4}, whole: &counts{ins: 6, del: 6}, end: v2},
		{name: "replace-partition-keyed", strategy: idem.ReplacePartition, key: "id", part: "day=2024-01-01",
			setup: []string{day2}, first: v1day1, cur: v2day1,
			want: counts{ins: 1, upd: 1, del: 1, unch: 1}, end: v2},
		{name: "replace-partition-keyless", strategy: idem.ReplacePartition, part: "day=2024-01-01",
			setup: []string{day2}, first: v1day1, cur: v2day1,
			want: counts{ins: 2, del: 2, unch: 1}, whole: &counts{ins: 3, del: 3}, end: v2},
		{name: "merge-partition", strategy: idem.Merge, key: "id", part: "day=2024-01-01",
			setup: []string{day2}, first: v1day1, cur: v2day1,
			want: counts{ins: 1, upd: 1, del: 1, unch: 1}, end: v2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg, _ := open(t, b)
			const table = "orders"
			sp := spec(table, tc.strategy, tc.key, tc.part)
			sp.NoDigest = noDigest
			for _, s := range tc.setup {
				o := sp
				o.Partition = &idem.Partition{Column: "day", Value: "2024-01-02"}
				mustLoad(t, tg, o, writeFile(t, "setup.csv", s))
			}
			before := fp(t, tg, table, nil)
			f1 := writeFile(t, "first.csv", tc.first)
			r := mustLoad(t, tg, sp, f1)
			if r.Inserted != r.RowsIn || r.Updated+r.Deleted != 0 {
				t.Fatalf("first load: %+v", got(r))
			}
			after1 := fp(t, tg, table, nil)
			if after1 == before {
				t.Fatal("first load did not change the table")
			}

			// Identical rerun: fast path, nothing written, same content.
			r = mustLoad(t, tg, sp, f1)
			if !r.Fast || r.Inserted+r.Updated+r.Deleted != 0 || fp(t, tg, table, nil) != after1 {
				t.Fatalf("identical rerun: fast=%v %+v", r.Fast, got(r))
			}
			// Forced rerun: goes through the write path, still changes nothing.
			forced := sp
			forced.Force = true
			r = mustLoad(t, tg, forced, f1)
			if r.Fast || r.Inserted+r.Updated+r.Deleted != 0 || fp(t, tg, table, nil) != after1 {
				t.Fatalf("forced rerun: fast=%v %+v", r.Fast, got(r))
			}
			if r.OutputFingerprint != fp(t, tg, table, sp.Partition).Hex() {
				t.Fatalf("output_fingerprint %s does not match the scope's", r.OutputFingerprint)
			}

			// Changed input: exact counts and the end state of SPEC.md.
			f2 := writeFile(t, "second.csv", tc.cur)
			r = mustLoad(t, tg, sp, f2)
			if g := got(r); g != tc.want && !(noDigest && tc.whole != nil && g == *tc.whole) {
				t.Fatalf("changed input: got %+v, want %+v", g, tc.want)
			}
			schema, err := tg.Describe(ctxb(), table)
			if err != nil {
				t.Fatal(err)
			}
			if want, have := expectFP(t, schema, tc.end), fp(t, tg, table, nil); want != have {
				t.Fatalf("end state differs from SPEC.md's:\nhave %v\nrows %v", have, rowsOf(t, tg, table))
			}
			if r.OutputFingerprint != fp(t, tg, table, sp.Partition).Hex() {
				t.Fatalf("output_fingerprint %s does not match the scope's", r.OutputFingerprint)
			}
			// The ledger's state token is what the fast path and the row
			// digest trust: it must be the scope's token as computed now.
			last, err := tg.LastRun(ctxb(), table, sp.Partition.String())
			if err != nil || last == nil {
				t.Fatalf("last run: %v", err)
			}
			if now, err := tg.StateToken(ctxb(), table, sp.Partition); err != nil || now != last.StateToken {
				t.Fatalf("recorded state token %q, computed now %q (%v)", last.StateToken, now, err)
			}
			// And that rerun is a no-op too, forced or not.
			end := fp(t, tg, table, nil)
			for _, force := range []bool{false, true} {
				s := sp
				s.Force = force
				r = mustLoad(t, tg, s, f2)
				if r.Inserted+r.Updated+r.Deleted != 0 || fp(t, tg, table, nil) != end {
					t.Fatalf("rerun of changed input (force=%v): %+v", force, got(r))
				}
			}
			runs, err := tg.Runs(ctxb(), idem.RunFilter{Table: table})
			if err != nil {
				t.Fatal(err)
			}
			if want := len(tc.setup) + 6; len(runs) != want {
				t.Fatalf("ledger has %d runs, want %d", len(runs), want)
			}
		})
	}
	t.Run("dedupe", func(t *testing.T) {
		tg, _ := open(t, b)
		in := writeFile(t, "dup.csv", "id,v\n1,a\n2,b\n1,c\n")
		for _, tc := range []struct {
			d    idem.Dedupe
			want string
		}{{idem.DedupeFirst, "id,v\n1,a\n2,b\n"}, {idem.DedupeLast, "id,v\n1,c\n2,b\n"}} {
			s := spec("d_"+string(tc.d), idem.Merge, "id", "")
			s.Dedupe = tc.d
			r := mustLoad(t, tg, s, in)
			if r.Skipped != 1 || r.Inserted != 2 {
				t.Fatalf("dedupe %s: %+v", tc.d, got(r))
			}
			schema, _ := tg.Describe(ctxb(), s.Table)
			if fp(t, tg, s.Table, nil) != expectFP(t, schema, tc.want) {
				t.Fatalf("dedupe %s kept the wrong row: %v", tc.d, rowsOf(t, tg, s.Table))
			}
		}
	})
	t.Run("composite-key", func(t *testing.T) {
		tg, _ := open(t, b)
		s := spec("ck", idem.Upsert, "a,b", "")
		mustLoad(t, tg, s, writeFile(t, "c1.csv", "a,b,v\n1,x,1\n1,y,2\n2,x,3\n"))
		r := mustLoad(t, tg, s, writeFile(t, "c2.csv", "a,b,v\n1,x,1\n1,y,20\n2,y,4\n"))
		if got(r) != (counts{ins: 1, upd: 1, unch: 1}) {
			t.Fatalf("composite upsert: %+v", got(r))
		}
	})
}
