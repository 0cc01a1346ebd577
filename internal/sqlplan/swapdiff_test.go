package sqlplan

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/idemhq/idem"
)

// TestLocatedMultiset: take and leftover behave as a multiset, whatever the
// order of adds and takes, against a counting map.
func TestLocatedMultiset(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		l := &located{}
		want := map[idem.RowHash][]int64{}
		var hashOf []idem.RowHash // by locator
		n := r.IntN(60)
		for i := 0; i < n; i++ {
			h := idem.RowHash{Hi: uint64(r.IntN(5)), Lo: uint64(r.IntN(3))}
			l.add(h, int64(i), int64(1000+i))
			want[h] = append(want[h], int64(i))
			hashOf = append(hashOf, h)
		}
		l.seal()
		for i := 0; i < 80; i++ {
			h := idem.RowHash{Hi: uint64(r.IntN(6)), Lo: uint64(r.IntN(3))}
			had := len(want[h]) > 0
			if got := l.take(h); got != had {
				t.Fatalf("round %d: take(%v) = %v, the multiset had %d", round, h, got, len(want[h]))
			}
			if had {
				want[h] = want[h][1:] // which locator is taken is not specified; how many is
			}
		}
		got, agg := l.leftover()
		var wantAgg versionAgg
		for _, loc := range got {
			wantAgg.add(versionAgg{1, 1000 + loc, 1000 + loc})
		}
		if agg != wantAgg {
			t.Fatalf("round %d: leftover versions %+v, want %+v", round, agg, wantAgg)
		}
		slices.Sort(got)
		if len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("round %d: a locator left over twice: %v", round, got)
		}
		perHash := map[idem.RowHash]int{}
		for _, loc := range got {
			if loc < 0 || loc >= int64(n) {
				t.Fatalf("round %d: unknown locator %d", round, loc)
			}
			perHash[hashOf[loc]]++
		}
		for h, locs := range want {
			if perHash[h] != len(locs) {
				t.Fatalf("round %d: %d of %v left over, want %d", round, perHash[h], h, len(locs))
			}
		}
	}
}
