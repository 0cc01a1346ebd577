package source

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/idemhq/idem"
)

// parseAll reads everything and insists that every failure is bad input:
// whatever the bytes, the parser must not panic or report a bug-like error.
func parseAll(t *testing.T, data []byte, opt Options) (result, bool) {
	t.Helper()
	res, err := openAll([]string{"-"}, bytes.NewReader(data), opt)
	if err != nil {
		var ie *idem.InputError
		if !errors.As(err, &ie) {
			t.Fatalf("error is %T, not *idem.InputError: %v", err, err)
		}
		return res, false
	}
	for i := 1; i < len(res.lines); i++ {
		if res.lines[i] <= res.lines[i-1] {
			t.Fatalf("line numbers not increasing: %v", res.lines)
		}
	}
	return res, true
}

// writeCSV is the simplest writer that keeps the NULL/"" distinction:
// NULL is the bare marker, everything that could be mistaken for
// something else is quoted.
func writeCSV(res result, delim byte, null string) []byte {
	var b bytes.Buffer
	field := func(s string, isNull bool) {
		if isNull {
			b.WriteString(null)
			return
		}
		if s == "" || s == null || strings.HasPrefix(s, "\ufeff") ||
			strings.ContainsAny(s, string(delim)+"\"\r\n") {
			b.WriteByte('"')
			b.WriteString(strings.ReplaceAll(s, `"`, `""`))
			b.WriteByte('"')
			return
		}
		b.WriteString(s)
	}
	rec := func(vals []idem.Value) {
		for i, v := range vals {
			if i > 0 {
				b.WriteByte(delim)
			}
			field(v.S, v.Null)
		}
		b.WriteByte('\n')
	}
	hdr := make([]idem.Value, len(res.cols))
	for i, c := range res.cols {
		hdr[i] = idem.V(c)
	}
	rec(hdr)
	for _, r := range res.rows {
		rec(r)
	}
	return b.Bytes()
}

func FuzzCSV(f *testing.F) {
	for _, s := range []string{
		"a,b\n1,2\n",
		"a,b\n\"x,y\",\"say \"\"hi\"\"\"\n",
		"a,b\r\n\"multi\r\nline\",\r\n,\"\"\n",
		"\ufeffa\n\n\"\"\n",
		"a,b\n\\N,\"\\N\"\n",
		"a\tb\n\"x\ty\"\t\n",
		"a,b\n1,\"unterminated\n",
		"a,a\n",
		"a,b\n\"ab\"c,1\n",
		"a,b\n1,x\"y\n",
		"a,b\n\xff,1\n",
		"a,b\n1,2,3\n",
		"a\n\"\ufeff\"\n",
	} {
		for mode := byte(0); mode < 4; mode++ {
			f.Add([]byte(s), mode)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		opt := Options{Format: "csv"}
		delim := byte(',')
		if mode&1 != 0 {
			opt.Format, delim = "tsv", '\t'
		}
		if mode&2 != 0 {
			opt.Null, opt.HasNull = `\N`, true
		}
		res, ok := parseAll(t, data, opt)
		if !ok || res.cols == nil {
			return
		}
		again := writeCSV(res, delim, opt.Null)
		res2, ok := parseAll(t, again, opt)
		if !ok {
			t.Fatalf("re-reading written CSV failed\ninput:   %q\nwritten: %q", data, again)
		}
		if !reflect.DeepEqual(res.cols, res2.cols) {
			t.Fatalf("columns %q became %q\nwritten: %q", res.cols, res2.cols, again)
		}
		if len(res.rows) != len(res2.rows) {
			t.Fatalf("%d rows became %d\nwritten: %q", len(res.rows), len(res2.rows), again)
		}
		for i := range res.rows {
			if !reflect.DeepEqual(res.rows[i], res2.rows[i]) {
				t.Fatalf("row %d %#v became %#v\nwritten: %q", i, res.rows[i], res2.rows[i], again)
			}
		}
	})
}

func FuzzJSONL(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":"x"}` + "\n" + `{"b":null}` + "\n",
		`{"n":12.50,"e":1e3,"t":true,"f":false}`,
		`{"o":{"k":[1, 2, {"z": "q"}]}, "s":"\u00e9\ud83d\ude00\n"}`,
		"\ufeff{\"a\":1}\r\n\r\n{\"a\":2}\r\n",
		`{"a":1}` + "\n" + `{"c":1}`,
		`{"a":1,"a":2}`,
		`[1,2]`,
		`{"a":"\ud800"}`,
		`{"a":"\u0000"}`,
		`{"a":1,}`,
		`{}` + "\n" + `{}`,
		"{\"a\":\"\xff\"}",
		`{"":1,"id":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opt := Options{Format: "jsonl"}
		res, ok := parseAll(t, data, opt)
		if !ok || res.cols == nil {
			return
		}
		checkAgainstEncodingJSON(t, data, res)

		// Round trip: every value written back as a JSON string (or
		// null) must read back identically.
		var b bytes.Buffer
		for _, r := range res.rows {
			b.WriteByte('{')
			for i, c := range res.cols {
				if i > 0 {
					b.WriteByte(',')
				}
				k, _ := json.Marshal(c)
				b.Write(k)
				b.WriteByte(':')
				if r[i].Null {
					b.WriteString("null")
				} else {
					s, _ := json.Marshal(r[i].S)
					b.Write(s)
				}
			}
			b.WriteString("}\n")
		}
		res2, ok := parseAll(t, b.Bytes(), opt)
		if !ok {
			t.Fatalf("re-reading written JSONL failed: %q", b.Bytes())
		}
		if len(res.rows) > 0 && !reflect.DeepEqual(res.cols, res2.cols) {
			t.Fatalf("columns %q became %q", res.cols, res2.cols)
		}
		if !reflect.DeepEqual(res.rows, res2.rows) && len(res.rows)+len(res2.rows) > 0 {
			t.Fatalf("rows %#v became %#v", res.rows, res2.rows)
		}
	})
}

// checkAgainstEncodingJSON decodes each accepted line with the standard
// library and compares value by value.
func checkAgainstEncodingJSON(t *testing.T, data []byte, res result) {
	t.Helper()
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	lines := bytes.Split(data, []byte("\n"))
	for i, r := range res.rows {
		line := lines[res.lines[i]-1]
		var m map[string]json.RawMessage
		d := json.NewDecoder(bytes.NewReader(line))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("line %d accepted but encoding/json says %v: %q", res.lines[i], err, line)
		}
		if _, err := d.Token(); err != io.EOF {
			t.Fatalf("line %d accepted with trailing data: %q", res.lines[i], line)
		}
		for k := range m {
			found := false
			for _, c := range res.cols {
				found = found || c == k
			}
			if !found {
				t.Fatalf("line %d: key %q accepted but is not a column", res.lines[i], k)
			}
		}
		for j, c := range res.cols {
			raw, ok := m[c]
			var want idem.Value
			switch {
			case !ok || string(raw) == "null":
				want = idem.Null
			case raw[0] == '"':
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					t.Fatal(err)
				}
				want = idem.V(s)
			case raw[0] == '{' || raw[0] == '[':
				var cb bytes.Buffer
				if err := json.Compact(&cb, raw); err != nil {
					t.Fatal(err)
				}
				want = idem.V(cb.String())
			default:
				want = idem.V(string(raw))
			}
			if r[j] != want {
				t.Fatalf("line %d key %q: got %#v, encoding/json gives %#v", res.lines[i], c, r[j], want)
			}
		}
	}
}
