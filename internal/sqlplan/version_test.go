package sqlplan

import (
	"context"
	"testing"
)

type fixedVersion int64

func (fixedVersion) VersionExpr(a string) string { return a + ".v" }
func (v fixedVersion) TxVersion(context.Context) (int64, error) {
	return int64(v), nil
}

func TestVersionTokenRoundTrip(t *testing.T) {
	for _, tok := range []VersionToken{{}, {N: 3, Sum: 30, Max: 10}, {N: 1 << 40, Sum: 1 << 62, Max: 1<<32 - 1}} {
		got, ok := ParseVersionToken(tok.String())
		if !ok || got != tok {
			t.Fatalf("%v -> %q -> %v, %v", tok, tok.String(), got, ok)
		}
	}
	for _, bad := range []string{"", "x1:1:2", "x2:1:2:3", "x1:1:99999999999999999999:3", "x1:-1:0:0", "x1:a:0:0"} {
		if _, ok := ParseVersionToken(bad); ok {
			t.Fatalf("%q parsed", bad)
		}
	}
}

// TestCarryToken checks the arithmetic against what a scan would give, on a
// scope modelled as a list of row versions.
func TestCarryToken(t *testing.T) {
	scan := func(vs []int64) VersionToken {
		var tk VersionToken
		for _, v := range vs {
			tk.N++
			tk.Sum += v
			tk.Max = max(tk.Max, v)
		}
		return tk
	}
	agg := func(vs []int64) versionAgg {
		tk := scan(vs)
		return versionAgg{tk.N, tk.Sum, tk.Max}
	}
	ctx := context.Background()
	// Ten rows by transaction 100, five by 90.
	before := []int64{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 90, 90, 90, 90, 90}
	const xid = 120
	cases := []struct {
		name             string
		updated, deleted []int // indexes into before
		inserted         int
		xid              int64
		wantCarry        bool
	}{
		{"update and insert", []int{0, 3, 11}, nil, 2, xid, true},
		{"update, insert, delete", []int{1}, []int{12, 13}, 4, xid, true},
		{"delete older rows only", nil, []int{10, 11}, 0, xid, true},
		// The newest rows may all be gone, and nothing newer written:
		// only a scan knows the new maximum.
		{"delete some newest rows only", nil, []int{0}, 0, xid, false},
		// xid wrapped below the old maximum: fine while an untouched row
		// keeps that maximum...
		{"wrapped xid, old max kept", []int{11}, nil, 1, 50, true},
		// ...unknown when the touched rows held it.
		{"wrapped xid, old max touched", []int{0}, nil, 1, 50, false},
		{"nothing", nil, nil, 0, xid, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gone := map[int]bool{}
			var touched, after []int64
			for _, i := range tc.updated {
				touched = append(touched, before[i])
				gone[i] = true
			}
			for _, i := range tc.deleted {
				touched = append(touched, before[i])
				gone[i] = true
			}
			for i, v := range before {
				if !gone[i] {
					after = append(after, v)
				}
			}
			for range len(tc.updated) + tc.inserted {
				after = append(after, tc.xid)
			}
			c := Counts{Updated: int64(len(tc.updated)), Inserted: int64(tc.inserted), Deleted: int64(len(tc.deleted))}
			tok, ok, err := carryToken(ctx, fixedVersion(tc.xid), scan(before), agg(touched), c, c.Updated, c.Inserted, c.Deleted)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantCarry {
				t.Fatalf("carried = %v, want %v", ok, tc.wantCarry)
			}
			if ok && tok != scan(after).String() {
				t.Fatalf("carried %s, a scan gives %s", tok, scan(after))
			}
		})
	}
	t.Run("statements did other than predicted", func(t *testing.T) {
		c := Counts{Updated: 2, Inserted: 1}
		if _, ok, _ := carryToken(ctx, fixedVersion(xid), scan(before), versionAgg{2, 200, 100}, c, 3, 1, 0); ok {
			t.Fatal("carried a token although fewer rows were updated than the digest predicted")
		}
		if _, ok, _ := carryToken(ctx, fixedVersion(xid), scan(before), versionAgg{1, 100, 100}, c, 2, 1, 0); ok {
			t.Fatal("carried a token although the touched rows do not match the updates")
		}
	})
}
