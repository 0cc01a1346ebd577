package httpidem

import (
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string // "" means an error
	}{
		{[]string{`"abc"`}, "abc"},
		{[]string{` "8e03978e-40d5-43e8-bc93-6894a57f9324" `}, "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{[]string{`"a\"b\\c"`}, `a"b\c`},
		{[]string{`"k";v=1;w;x="y";z=?1`}, "k"},
		{[]string{`"k"; a=tok;b=:aGk=:`}, "k"},
		{[]string{`"` + strings.Repeat("x", 255) + `"`}, strings.Repeat("x", 255)},
		{[]string{`"` + strings.Repeat("x", 256) + `"`}, ""},
		{nil, ""},
		{[]string{""}, ""},
		{[]string{`""`}, ""},
		{[]string{`abc`}, ""},    // a token, not a string
		{[]string{`123`}, ""},    // an integer
		{[]string{`?1`}, ""},     // a boolean
		{[]string{`"abc`}, ""},   // unterminated
		{[]string{`"a\nb"`}, ""}, // bad escape
		{[]string{"\"a\tb\""}, ""},
		{[]string{"\"caf\xc3\xa9\""}, ""}, // non-ASCII
		{[]string{`"a", "b"`}, ""},        // a list
		{[]string{`"a"`, `"b"`}, ""},      // two field lines
		{[]string{`"a" x`}, ""},
		{[]string{`"a";`}, ""},
		{[]string{`"a";V=1`}, ""},
	} {
		got, err := ParseKey(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseKey(%q) = %q, want an error", tc.in, got)
			} else if !IsKeyError(err) {
				t.Errorf("ParseKey(%q): %T, want *KeyError", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseKey(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseKey: never panics, accepted keys are printable ASCII of at most
// 255 characters, and serialising an accepted key parses back to it.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b"`, `"k";v=1`, `abc`, `"`, `"a";b=:x:`, `"x";y="z\\"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey([]string{s})
		if err != nil {
			return
		}
		if k == "" || len(k) > MaxKeyLen {
			t.Fatalf("accepted key of length %d", len(k))
		}
		for i := 0; i < len(k); i++ {
			if k[i] < 0x20 || k[i] > 0x7e {
				t.Fatalf("accepted byte 0x%02x", k[i])
			}
		}
		q := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(k) + `"`
		if k2, err := ParseKey([]string{q}); err != nil || k2 != k {
			t.Fatalf("round trip of %q: %q, %v", k, k2, err)
		}
		// Whatever the strict parser takes, the lenient one takes alike.
		if k2, err := ParseBareKey([]string{s}); err != nil || k2 != k {
			t.Fatalf("ParseBareKey(%q) = %q, %v; ParseKey gave %q", s, k2, err, k)
		}
	})
}

func TestParseBareKey(t *testing.T) {
	for in, want := range map[string]string{
		"8e03978e-40d5-43e8":     "8e03978e-40d5-43e8",
		` "quoted" `:             "quoted",
		"abc123":                 "abc123",
		"a b":                    "",
		"a,b":                    "",
		"a;v=1":                  "",
		"caf\xc3\xa9":            "",
		strings.Repeat("x", 256): "",
	} {
		got, err := ParseBareKey([]string{in})
		if (want == "") != (err != nil) || got != want {
			t.Errorf("ParseBareKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
