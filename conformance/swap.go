package conformance

import (
	"fmt"
	"strings"
	"testing"

	"github.com/idemhq/idem"
)

// testKeylessSwap holds keyless replaces to their multiset semantics on
// every path a target may take: rows compared in the client with the
// changes held in memory, the same with the changes staged (a one-byte
// buffer), and the scope rewritten whole (NoDigest). Counts are what
// changed as multisets; a target that rewrites whole must still end in
// exactly the same rows.
func testKeylessSwap(t *testing.T, be Backend) {
	type path struct {
		name   string
		buffer int
		whole  bool
	}
	paths := []path{{"held", 0, false}, {"staged", 1, false}, {"whole", 0, true}}
	for _, pa := range paths {
		t.Run(pa.name, func(t *testing.T) {
			tg, _ := open(t, be)
			with := func(s idem.LoadSpec) idem.LoadSpec {
				s.DiffBuffer, s.NoDigest = pa.buffer, pa.whole
				return s
			}
			// check: the counts (wholeWant when the scope was rewritten
			// whole), the whole table's rows, and the result's output
			// fingerprint against the scope's.
			check := func(what string, r *idem.Result, want, wholeWant counts, sp idem.LoadSpec, end string) {
				t.Helper()
				if g := got(r); g != want && !(pa.whole && g == wholeWant) {
					t.Fatalf("%s: got %+v, want %+v", what, g, want)
				}
				if w, h := expectFP(t, mustDescribe(t, tg, sp.Table), end), fp(t, tg, sp.Table, nil); w != h {
					t.Fatalf("%s: table holds %v", what, rowsOf(t, tg, sp.Table))
				}
				if r.OutputFingerprint != fp(t, tg, sp.Table, sp.Partition).Hex() {
					t.Fatalf("%s: output fingerprint %s is not the scope's", what, r.OutputFingerprint)
				}
			}

			// Duplicates count as a multiset: one "a" goes, one "b" comes.
			dup := with(spec("dup", idem.Replace, "", ""))
			mustLoad(t, tg, dup, writeFile(t, "d1.csv", "v,n\na,1\na,1\nb,2\n"))
			r := mustLoad(t, tg, dup, writeFile(t, "d2.csv", "v,n\nb,2\na,1\nb,2\n"))
			check("duplicates", r, counts{ins: 1, del: 1, unch: 2}, counts{ins: 3, del: 3}, dup, "v,n\na,1\nb,2\nb,2\n")
			r = mustLoad(t, tg, dup, writeFile(t, "d3.csv", "v,n\nc,3\n"))
			check("all different", r, counts{ins: 1, del: 3}, counts{ins: 1, del: 3}, dup, "v,n\nc,3\n")

			// A table with a primary key (made by a keyed load): a keyless
			// partition replace that changes a row keeps its key, so the
			// old version must be gone before the new one goes in.
			keyed := spec("part_pk", idem.Upsert, "id", "")
			mustLoad(t, tg, keyed, writeFile(t, "k1.csv", v1))
			part := with(spec("part_pk", idem.ReplacePartition, "", "day=2024-01-01"))
			// A dry run counts the same and leaves the table as it was.
			dry := part
			dry.DryRun = true
			before := fp(t, tg, "part_pk", nil)
			r = mustLoad(t, tg, dry, writeFile(t, "k2.csv", v2day1))
			if g := got(r); g != (counts{ins: 2, del: 2, unch: 1}) && !(pa.whole && g == counts{ins: 3, del: 3}) {
				t.Fatalf("dry run: got %+v", g)
			}
			if fp(t, tg, "part_pk", nil) != before {
				t.Fatal("the dry run changed the table")
			}
			r = mustLoad(t, tg, part, writeFile(t, "k2.csv", v2day1))
			check("partition with a primary key", r, counts{ins: 2, del: 2, unch: 1}, counts{ins: 3, del: 3}, part, v2)
			// Rerun, forced: nothing to write.
			forced := part
			forced.Force = true
			r = mustLoad(t, tg, forced, writeFile(t, "k2.csv", v2day1))
			check("forced rerun", r, counts{unch: 3}, counts{unch: 3}, part, v2)

			// A big scope with a few changes, over several input batches.
			var b1, b2 strings.Builder
			b1.WriteString("id,day,amount,name\n")
			b2.WriteString("id,day,amount,name\n")
			for i := 1; i <= 5000; i++ {
				fmt.Fprintf(&b1, "%d,2024-01-01,%d.25,n%d\n", 1000+i, i, i)
				switch {
				case i%500 == 0: // changed
					fmt.Fprintf(&b2, "%d,2024-01-01,%d.75,n%d\n", 1000+i, i, i)
				case i%700 == 0: // gone
				default:
					fmt.Fprintf(&b2, "%d,2024-01-01,%d.25,n%d\n", 1000+i, i, i)
				}
			}
			b2.WriteString("99999,2024-01-01,1,new\n")
			mustLoad(t, tg, part, writeFile(t, "big1.csv", b1.String()))
			r = mustLoad(t, tg, part, writeFile(t, "big2.csv", b2.String()))
			// 10 changed (multiples of 500), 6 gone (of 700 but not of
			// 500), 1 new; a SQL target's whole path counts every row.
			want, whole := counts{ins: 11, del: 16, unch: 4984}, counts{ins: 4995, del: 5000}
			if g := got(r); g != want && !(pa.whole && g == whole) {
				t.Fatalf("big partition: got %+v, want %+v", g, want)
			}
			if have, w := fp(t, tg, "part_pk", part.Partition), expectFP(t, mustDescribe(t, tg, "part_pk"), b2.String()); have != w {
				t.Fatalf("big partition holds %d rows, not the input's %d", have.Rows, w.Rows)
			}

			// A scope over the bound of rows compared in the client is
			// swapped whole.
			// The scope was loaded by a keyed load of the whole table, so
			// the ledger has no row count for the partition and the bound
			// is found by reading.
			mustLoad(t, tg, spec("capped", idem.Upsert, "id", ""), writeFile(t, "big1.csv", b1.String()))
			capped := with(spec("capped", idem.ReplacePartition, "", "day=2024-01-01"))
			capped.DiffMaxRows = 100
			r = mustLoad(t, tg, capped, writeFile(t, "big2.csv", b2.String()))
			// A SQL target must have swapped whole; a file target (it runs
			// no queries) compares every folder it rewrites anyway.
			if g := got(r); g != whole && !(be.NoQuery != "" && g == want) {
				t.Fatalf("scope over the bound: got %+v, want %+v", g, whole)
			}
			if have, w := fp(t, tg, "capped", nil), expectFP(t, mustDescribe(t, tg, "capped"), b2.String()); have != w {
				t.Fatalf("scope over the bound: holds %d rows, not the input's %d", have.Rows, w.Rows)
			}

			// A changed row whose key another input row also has: the
			// target's key refuses it, at its line, and nothing changes.
			if be.NoTableKey != "" {
				t.Logf("skipping the primary-key clash: %s", be.NoTableKey)
				return
			}
			before = fp(t, tg, "part_pk", nil)
			clash := strings.Replace(b2.String(), "99999,2024-01-01,1,new\n", "99999,2024-01-01,1,new\n1001,2024-01-01,5,dup\n", 1)
			_, err := load(t, tg, part, writeFile(t, "clash.csv", clash))
			if !idem.IsInputError(err) || !strings.Contains(err.Error(), "clash.csv:") {
				t.Fatalf("want an input error in clash.csv, got %v", err)
			}
			if fp(t, tg, "part_pk", nil) != before {
				t.Fatal("the failed swap changed the table")
			}
		})
	}
}

func mustDescribe(t *testing.T, tg idem.Target, table string) idem.Schema {
	t.Helper()
	s, err := tg.Describe(ctxb(), table)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
