package idem

import (
	"math/rand/v2"
	"testing"
)

func rowsFP(schema Schema, rows []Row) Fingerprint {
	h := NewRowHasher(schema)
	var f Fingerprint
	for _, r := range rows {
		f.Add(h.Hash(r))
	}
	return f
}

func TestFingerprintMultiset(t *testing.T) {
	schema := Schema{{"id", TypeInteger}, {"name", TypeText}, {"amount", TypeNumeric}}
	base := []Row{
		{V("1"), V("a"), V("1.5")},
		{V("2"), V("b"), V("2")},
		{V("3"), Null, V("3")},
	}
	fp := rowsFP(schema, base)
	if fp.Rows != 3 || len(fp.Hex()) != 32 {
		t.Fatalf("fingerprint %v", fp)
	}
	// Order does not matter.
	shuffled := append([]Row{}, base...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	shuffled[0], shuffled[2] = shuffled[2], shuffled[0]
	if rowsFP(schema, shuffled) != fp {
		t.Fatal("fingerprint depends on row order")
	}
	// Column order does not matter either: columns are hashed by name.
	rev := Schema{schema[2], schema[1], schema[0]}
	var revRows []Row
	for _, r := range base {
		revRows = append(revRows, Row{r[2], r[1], r[0]})
	}
	if rowsFP(rev, revRows) != fp {
		t.Fatal("fingerprint depends on column order")
	}
	differs := map[string][]Row{
		"changed value":  {{V("1"), V("a"), V("1.6")}, base[1], base[2]},
		"duplicate row":  append(append([]Row{}, base...), base[0]),
		"swapped values": {{V("1"), V("b"), V("1.5")}, {V("2"), V("a"), V("2")}, base[2]},
		"NULL vs empty":  {base[0], base[1], {V("3"), V(""), V("3")}},
		"missing row":    base[:2],
	}
	for name, rows := range differs {
		if rowsFP(schema, rows) == fp {
			t.Errorf("%s: same fingerprint", name)
		}
	}
	// A row and its duplicate removed: XOR would give back the original;
	// a multiset sum must not.
	twice := append(append([]Row{}, base...), base[1], base[1])
	if rowsFP(schema, twice) == fp {
		t.Error("adding a row twice cancelled out (XOR-like)")
	}
	// Sub is the inverse of Add.
	h := NewRowHasher(schema)
	f := fp
	f.Sub(h.Hash(base[1]))
	if f != rowsFP(schema, []Row{base[0], base[2]}) {
		t.Error("Sub is not the inverse of Add")
	}
	// Field boundaries are unambiguous.
	s2 := Schema{{"a", TypeText}, {"b", TypeText}}
	if rowsFP(s2, []Row{{V("ab"), V("c")}}) == rowsFP(s2, []Row{{V("a"), V("bc")}}) {
		t.Error("field boundary ambiguity")
	}
	// Integer and numeric agree on the same number (cross-backend types).
	if rowsFP(Schema{{"x", TypeInteger}}, []Row{{V("1")}}) != rowsFP(Schema{{"x", TypeNumeric}}, []Row{{V("1")}}) {
		t.Error("integer 1 and numeric 1 differ")
	}
	if got, err := ParseFingerprint(fp.Hex(), fp.Rows); err != nil || got != fp {
		t.Errorf("ParseFingerprint round trip: %v %v", got, err)
	}
}
