package idem

import (
	"testing"
)

func TestCanon(t *testing.T) {
	ok := []struct {
		t        Type
		in, want string
	}{
		{TypeInteger, "42", "42"}, {TypeInteger, " -007 ", "-7"}, {TypeInteger, "+5", "5"}, {TypeInteger, "-0", "0"},
		{TypeNumeric, "1.50", "1.5"}, {TypeNumeric, "001.000", "1"}, {TypeNumeric, "-0.00", "0"}, {TypeNumeric, ".5", "0.5"},
		{TypeNumeric, "5.", "5"}, {TypeNumeric, "1e3", "1000"}, {TypeNumeric, "1.5E-3", "0.0015"}, {TypeNumeric, "-12.340", "-12.34"},
		{TypeNumeric, "12345678901234567890.123456789", "12345678901234567890.123456789"},
		{TypeBoolean, "t", "true"}, {TypeBoolean, "FALSE", "false"}, {TypeBoolean, "yes", "true"}, {TypeBoolean, "0", "false"},
		{TypeDate, "2024-02-29", "2024-02-29"},
		{TypeTimestamp, "2024-01-05T10:00:00Z", "2024-01-05T10:00:00Z"},
		{TypeTimestamp, "2024-01-05 12:00:00+02:00", "2024-01-05T10:00:00Z"},
		{TypeTimestamp, "2024-01-05 10:00:00+00", "2024-01-05T10:00:00Z"},
		{TypeTimestamp, "2024-01-05 10:00:00.1234567", "2024-01-05T10:00:00.123457Z"},
		{TypeTimestamp, "2024-01-05T10:00:00.500000Z", "2024-01-05T10:00:00.5Z"},
		{TypeText, " keep spaces ", " keep spaces "},
	}
	for _, c := range ok {
		got, err := Canon(c.t, c.in)
		if err != nil || got != c.want {
			t.Errorf("Canon(%s, %q) = %q, %v; want %q", c.t, c.in, got, err, c.want)
		}
	}
	bad := []struct {
		t  Type
		in string
	}{
		{TypeInteger, "1.5"}, {TypeInteger, "9223372036854775808"}, {TypeInteger, ""}, {TypeInteger, "0x10"},
		{TypeNumeric, "12,5"}, {TypeNumeric, "NaN"}, {TypeNumeric, "1e"}, {TypeNumeric, "."}, {TypeNumeric, "--1"}, {TypeNumeric, "1e99999"},
		{TypeBoolean, "maybe"}, {TypeDate, "2024-02-30"}, {TypeDate, "2024-1-5"}, {TypeTimestamp, "yesterday"},
		{TypeText, "a\x00b"},
	}
	for _, c := range bad {
		if got, err := Canon(c.t, c.in); err == nil {
			t.Errorf("Canon(%s, %q) = %q, want an error", c.t, c.in, got)
		}
	}
}

func TestInfer(t *testing.T) {
	in := NewInferrer(7)
	for _, r := range [][]string{
		{"1", "1.5", "true", "2024-01-01", "2024-01-01T00:00:00Z", "x", ""},
		{"2", "2", "f", "2024-01-02", "2024-01-02", "12", ""},
		{"-3", "", "T", "2024-01-03", "2024-01-03 10:00", "3.5", ""},
	} {
		rec := make([]Value, len(r))
		for i, s := range r {
			rec[i] = Value{S: s, Null: s == ""}
		}
		in.Observe(rec)
	}
	want := []Type{TypeInteger, TypeNumeric, TypeBoolean, TypeDate, TypeTimestamp, TypeText, TypeText}
	for i, got := range in.Types() {
		if got != want[i] {
			t.Errorf("column %d: inferred %s, want %s", i, got, want[i])
		}
	}
}

// TestInferCodes: digits written as codes (leading zeros, a sign, spaces)
// make a text column, so "02134" is not loaded as 2134.
func TestInferCodes(t *testing.T) {
	for _, tc := range []struct {
		vals []string
		want Type
	}{
		{[]string{"02134", "10001"}, TypeText},
		{[]string{"0", "10", "-7"}, TypeInteger},
		{[]string{"0.5", "-0.25", "10"}, TypeNumeric},
		{[]string{"-05"}, TypeText},
		{[]string{"007.5"}, TypeText},
		{[]string{"+5"}, TypeText},
		{[]string{" 5"}, TypeText},
	} {
		in := NewInferrer(1)
		for _, v := range tc.vals {
			in.Observe([]Value{{S: v}})
		}
		if got := in.Types()[0]; got != tc.want {
			t.Errorf("%q: %s, want %s", tc.vals, got, tc.want)
		}
	}
	// An existing numeric column still takes them.
	if got, err := Canon(TypeInteger, "02134"); err != nil || got != "2134" {
		t.Errorf("Canon(integer, 02134) = %q, %v", got, err)
	}
}

// TestTimestampRoundsLikePostgres: sub-microsecond fractions round as
// PostgreSQL 16 rounds them (SELECT x::timestamptz), ties to even.
func TestTimestampRoundsLikePostgres(t *testing.T) {
	for in, want := range map[string]string{
		"2024-01-01T10:00:00.0000005Z": "2024-01-01 10:00:00+00",
		"2024-01-01T10:00:00.0000015Z": "2024-01-01 10:00:00.000002+00",
		"2024-01-01T10:00:00.0000025Z": "2024-01-01 10:00:00.000002+00",
		"2024-01-01T10:00:00.0000035Z": "2024-01-01 10:00:00.000004+00",
		"2024-01-01T10:00:00.0000045Z": "2024-01-01 10:00:00.000004+00",
		"2024-01-01T10:00:00.1234565Z": "2024-01-01 10:00:00.123456+00",
		"2024-01-01T10:00:00.9999995Z": "2024-01-01 10:00:01+00",
		"2024-01-01T10:00:00.0000006Z": "2024-01-01 10:00:00.000001+00",
	} {
		got, err := Canon(TypeTimestamp, in)
		if err != nil {
			t.Fatal(err)
		}
		if w, _ := Canon(TypeTimestamp, want); got != w {
			t.Errorf("%s: %s, want %s (PostgreSQL's %s)", in, got, w, want)
		}
	}
}

func FuzzCanonNumeric(f *testing.F) {
	for _, s := range []string{"1.50", "-0", "1e3", ".5", "5.", "12,5", "1e-999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Canon(TypeNumeric, s)
		if err != nil {
			return
		}
		// Canonical forms are fixed points: normalising twice changes
		// nothing, or equal numbers could hash differently.
		again, err := Canon(TypeNumeric, c)
		if err != nil || again != c {
			t.Fatalf("Canon(%q) = %q, but Canon(%q) = %q, %v", s, c, c, again, err)
		}
	})
}

// FuzzCanonFastPaths: whatever the fast checks accept must be exactly what
// the full parsers produce, or equal values could be written differently.
func FuzzCanonFastPaths(f *testing.F) {
	for _, s := range []string{"0", "-0", "007", "12", "-12", "1.50", "1.5", "-0.5", "0.0", "2024-02-29", "2023-02-29", "0000-01-01", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if isCanonInteger(s) {
			if c, err := canonInteger(s); err != nil || c != s {
				t.Fatalf("integer fast path accepted %q, parser says %q, %v", s, c, err)
			}
		}
		if isCanonNumeric(s) {
			if c, err := canonNumeric(s); err != nil || c != s {
				t.Fatalf("numeric fast path accepted %q, parser says %q, %v", s, c, err)
			}
		}
		if isCanonDate(s) {
			if c, err := canonDate(s); err != nil || c != s {
				t.Fatalf("date fast path accepted %q, parser says %q, %v", s, c, err)
			}
		}
	})
}
