package conformance

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/idemhq/idem"
)

// testDigestHistory runs a long history of keyed loads of one table, with
// every strategy, changed, added and removed rows, and now and then the
// input in another order. A backend that keeps state between loads (the
// SQL targets' row digest and its patches) must report exact counts and
// leave exactly the expected rows after every one of them.
func testDigestHistory(t *testing.T, b Backend) {
	tg, _ := open(t, b)
	rng := rand.New(rand.NewPCG(7, 11))
	model := map[int]int{} // id -> amount: what the table must hold
	for id := 1; id <= 3000; id++ {
		model[id] = id % 89
	}
	nextID := 3001
	csv := func(rows map[int]int, ids []int) string {
		var b strings.Builder
		b.WriteString("id,amount\n")
		for _, id := range ids {
			fmt.Fprintf(&b, "%d,%d\n", id, rows[id])
		}
		return b.String()
	}
	sorted := func(m map[int]int) []int {
		ids := make([]int, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return ids
	}
	schema := idem.Schema{{Name: "id", Type: idem.TypeInteger}, {Name: "amount", Type: idem.TypeInteger}}
	check := func(step int, r *idem.Result) {
		t.Helper()
		want := expectFP(t, schema, csv(model, sorted(model)))
		if got := fp(t, tg, "hist", nil); got != want {
			t.Fatalf("step %d: table holds %v, want %v", step, got, want)
		}
		if r.OutputFingerprint != want.Hex() {
			t.Fatalf("step %d: reported output %s, table %s", step, r.OutputFingerprint, want.Hex())
		}
	}
	r := mustLoad(t, tg, spec("hist", idem.Upsert, "id", ""), writeFile(t, "h0.csv", csv(model, sorted(model))))
	check(0, r)
	strategies := []idem.Strategy{idem.Merge, idem.Upsert, idem.InsertMissing, idem.Merge, idem.Upsert}
	for step := 1; step <= 24; step++ {
		st := strategies[step%len(strategies)]
		ids := sorted(model)
		changed := map[int]bool{}
		for len(changed) < 3+step {
			changed[ids[rng.IntN(len(ids))]] = true
		}
		var added, removed []int
		for range 3 {
			added = append(added, nextID)
			nextID++
		}
		if st == idem.Merge {
			for len(removed) < 2 {
				if id := ids[rng.IntN(len(ids))]; !changed[id] && !slices.Contains(removed, id) {
					removed = append(removed, id)
				}
			}
		}
		in := map[int]int{}
		var order []int
		switch st {
		case idem.Merge:
			for _, id := range ids {
				in[id] = model[id]
			}
			for id := range changed {
				in[id] = model[id] + 1000
			}
			for _, id := range removed {
				delete(in, id)
			}
		case idem.Upsert, idem.InsertMissing:
			for id := range changed {
				in[id] = model[id] + 1000
			}
		}
		for _, id := range added {
			in[id] = step
		}
		order = sorted(in)
		if step%7 == 0 {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		r := mustLoad(t, tg, spec("hist", st, "id", ""), writeFile(t, fmt.Sprintf("h%d.csv", step), csv(in, order)))
		// What the table must now hold, and the counts that say so.
		wantUpd := int64(len(changed))
		if st == idem.InsertMissing {
			wantUpd = 0
		} else {
			for id := range changed {
				model[id] += 1000
			}
		}
		for _, id := range added {
			model[id] = step
		}
		for _, id := range removed {
			delete(model, id)
		}
		if r.Updated != wantUpd || r.Inserted != int64(len(added)) || r.Deleted != int64(len(removed)) {
			t.Fatalf("step %d (%s): %d updated, %d inserted, %d deleted; want %d, %d, %d",
				step, st, r.Updated, r.Inserted, r.Deleted, wantUpd, len(added), len(removed))
		}
		check(step, r)
	}
}
