package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/postgres"
	"github.com/idemhq/idem/source"
)

// TestCarriedTokenMatchesScan: after a keyed load that applied a delta
// through the row digest, the state token idem recorded (carried forward
// from the rows it touched, without reading the scope) must be exactly what
// a scan of the scope gives, for every strategy and mix of changes; and the
// next load must find the digest valid.
func TestCarriedTokenMatchesScan(t *testing.T) {
	tg := openTokenTarget(t)
	ctx := context.Background()
	// rows: id -> amount; day is 2024-01-0(1+id%3).
	csv := func(rows map[int]int) string {
		var b strings.Builder
		b.WriteString("id,day,amount\n")
		for id := 1; id <= 3000; id++ {
			if a, ok := rows[id]; ok {
				fmt.Fprintf(&b, "%d,2024-01-0%d,%d\n", id, 1+id%3, a)
			}
		}
		return b.String()
	}
	n := 0
	load := func(rows map[int]int, st idem.Strategy, part string, keep func(id int) bool) *idem.Result {
		t.Helper()
		n++
		sub := map[int]int{}
		for id, a := range rows {
			if keep == nil || keep(id) {
				sub[id] = a
			}
		}
		spec := idem.LoadSpec{Table: "t", Key: []string{"id"}, Strategy: st, Create: true, RunID: fmt.Sprint("r", n)}
		if part != "" {
			p, err := idem.ParsePartition(part)
			if err != nil {
				t.Fatal(err)
			}
			spec.Partition = p
		}
		return loadChecked(t, tg, spec, csv(sub))
	}
	rows := map[int]int{}
	for id := 1; id <= 2000; id++ {
		rows[id] = id % 50
	}
	load(rows, idem.Upsert, "", nil)

	// Merge: 20 updated, 5 added, 7 gone.
	for id := 1; id <= 20; id++ {
		rows[id*37] += 1000
	}
	for id := 2001; id <= 2005; id++ {
		rows[id] = 1
	}
	for id := 100; id < 107; id++ {
		delete(rows, id)
	}
	if r := load(rows, idem.Merge, "", nil); r.Updated != 20 || r.Inserted != 5 || r.Deleted != 7 {
		t.Fatalf("merge counts: %+v", r)
	}
	// Upsert with updates only, then an identical merge (nothing to do).
	rows[5] = 999
	if r := load(rows, idem.Upsert, "", nil); r.Updated != 1 || r.Inserted != 0 {
		t.Fatalf("upsert counts: %+v", r)
	}
	if r := load(rows, idem.Merge, "", nil); r.Updated+r.Inserted+r.Deleted != 0 {
		t.Fatalf("identical merge wrote: %+v", r)
	}
	// Deletes only, of rows the newest transaction wrote (id 5): the new
	// maximum is unknown, so the token is read, and must still match.
	delete(rows, 5)
	if r := load(rows, idem.Merge, "", nil); r.Deleted != 1 {
		t.Fatalf("delete-only merge: %+v", r)
	}
	// Someone outside idem writes: the digest is invalid, the full path
	// runs, and what it records must match as well.
	if _, err := tg.Pool().Exec(ctx, "UPDATE t SET amount = amount + 1 WHERE id = 7"); err != nil {
		t.Fatal(err)
	}
	rows[8] = 12345
	if r := load(rows, idem.Upsert, "", nil); r.Updated != 2 {
		t.Fatalf("upsert after an outside write: %+v", r)
	}

	// Partitions: a keyed replace of one day, with changes, additions and
	// removals inside it.
	day := func(id int) bool { return id%3 == 1 } // 2024-01-02
	load(rows, idem.ReplacePartition, "day=2024-01-02", day)
	rows[10] += 7 // 10 % 3 == 1
	rows[2008] = 3
	delete(rows, 13)
	if r := load(rows, idem.ReplacePartition, "day=2024-01-02", day); r.Updated != 1 || r.Inserted != 1 || r.Deleted != 1 {
		t.Fatalf("partition replace counts: %+v", r)
	}
}

// TestSwapTokenMatchesScan: keyless partition swaps record the token
// without scanning when they can (every row written by one COPY in the
// swap's savepoint, or the old rows kept when the swap undid itself), or
// after writing only the rows that differ; it must equal a scan each time,
// including after someone outside idem wrote. Both ways of swapping run:
// row by row (the default) and whole (NoDigest).
func TestSwapTokenMatchesScan(t *testing.T) {
	one := "1,2024-01-02,a\n2,2024-01-02,b\n3,2024-01-02,c\n"
	two := "1,2024-01-02,a\n2,2024-01-02,B\n"
	steps := []struct {
		content            string
		force              bool
		outside            string // run before the load, outside idem
		diffIns, diffDel   int64
		wholeIns, wholeDel int64
	}{
		{content: one, diffIns: 3, wholeIns: 3},                          // the scope was empty
		{content: two, diffIns: 1, diffDel: 2, wholeIns: 2, wholeDel: 3}, // whole: swapped in a savepoint
		{content: two, force: true},                                      // whole: the swap undoes itself
		{content: two, force: true, outside: "UPDATE s SET v = 'x' WHERE id = 1", // the old rows differ
			diffIns: 1, diffDel: 1, wholeIns: 2, wholeDel: 2},
		{content: one, diffIns: 2, diffDel: 1, wholeIns: 3, wholeDel: 2},
	}
	for _, whole := range []bool{false, true} {
		t.Run(map[bool]string{false: "diff", true: "whole"}[whole], func(t *testing.T) {
			tg := openTokenTarget(t)
			part := &idem.Partition{Column: "day", Value: "2024-01-02"}
			for n, st := range steps {
				if st.outside != "" {
					if _, err := tg.Pool().Exec(context.Background(), st.outside); err != nil {
						t.Fatal(err)
					}
				}
				res := loadChecked(t, tg, idem.LoadSpec{Table: "s", Partition: part, Strategy: idem.ReplacePartition,
					Create: true, Force: st.force, NoDigest: whole, RunID: fmt.Sprint("s", n)}, "id,day,v\n"+st.content)
				wantIns, wantDel := st.diffIns, st.diffDel
				if whole {
					wantIns, wantDel = st.wholeIns, st.wholeDel
				}
				if res.Inserted != wantIns || res.Deleted != wantDel {
					t.Fatalf("swap %d: %d inserted, %d deleted; want %d, %d", n+1, res.Inserted, res.Deleted, wantIns, wantDel)
				}
			}
		})
	}
}

// openTokenTarget opens a PostgreSQL target on a fresh schema.
func openTokenTarget(t *testing.T) *postgres.Target {
	t.Helper()
	tg, err := postgres.Open(context.Background(), freshSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

// loadChecked loads csv into table and checks what the load recorded: the
// state token must be what a scan gives now, and the output fingerprint
// what reading the scope back gives.
func loadChecked(t *testing.T, tg *postgres.Target, spec idem.LoadSpec, csv string) *idem.Result {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "in.csv")
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	rr, err := source.Open([]string{path}, nil, source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	res, err := idem.Load(ctx, tg, rr, spec)
	if err != nil {
		t.Fatalf("load %s: %v", spec.RunID, err)
	}
	runs, err := tg.Runs(ctx, idem.RunFilter{Table: spec.Table, Partition: res.Partition, ExactPartition: true, Limit: 1})
	if err != nil || len(runs) == 0 {
		t.Fatalf("runs: %v %v", runs, err)
	}
	scanned, err := tg.StateToken(ctx, spec.Table, spec.Partition)
	if err != nil {
		t.Fatal(err)
	}
	if runs[0].StateToken != scanned {
		t.Fatalf("load %s (%s %s): recorded token %s, a scan gives %s", spec.RunID, spec.Strategy, spec.Partition, runs[0].StateToken, scanned)
	}
	if fp, _ := idem.FingerprintOf(ctx, tg, spec.Table, spec.Partition); fp.Hex() != res.OutputFingerprint {
		t.Fatalf("load %s: output fingerprint %s, read back %s", spec.RunID, res.OutputFingerprint, fp.Hex())
	}
	return res
}
