package source

import (
	"reflect"
	"testing"

	"github.com/idemhq/idem"
)

func TestJSONL(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		opt   Options
		cols  []string
		rows  [][]idem.Value
		lines []int64
		err   string
	}{
		{
			name: "key order as written, not sorted",
			in:   `{"zeta":1,"alpha":"a","mid":true}` + "\n",
			cols: []string{"zeta", "alpha", "mid"},
			rows: [][]idem.Value{row("1", "a", "true")},
		},
		{
			name: "later objects reorder and omit keys",
			in:   `{"a":1,"b":2,"c":3}` + "\n" + `{"c":"x","a":"y"}` + "\n" + `{}` + "\n",
			cols: []string{"a", "b", "c"},
			rows: [][]idem.Value{row("1", "2", "3"), row("y", N, "x"), row(N, N, N)},
		},
		{
			name: "numbers keep their literal text",
			in:   `{"a":12.50,"b":1e3,"c":-0,"d":100000000000000000000000001,"e":1E-7}` + "\n",
			cols: []string{"a", "b", "c", "d", "e"},
			rows: [][]idem.Value{row("12.50", "1e3", "-0", "100000000000000000000000001", "1E-7")},
		},
		{
			name: "null, booleans, empty string",
			in:   `{"a":null,"b":false,"c":true,"d":""}` + "\n",
			cols: []string{"a", "b", "c", "d"},
			rows: [][]idem.Value{row(N, "false", "true", "")},
		},
		{
			name: "nested values become compact JSON text",
			in:   `{"o": { "k" : [1, 2.50, {"x": "a b"}] , "n":null }, "arr":[ ], "s":"[not json]"}` + "\n",
			cols: []string{"o", "arr", "s"},
			rows: [][]idem.Value{row(`{"k":[1,2.50,{"x":"a b"}],"n":null}`, "[]", "[not json]")},
		},
		{
			name: "string escapes",
			in:   `{"s":"q\"b\\s\/n\n\t\u00e9\ud83d\ude00","k\u0041":1}` + "\n",
			cols: []string{"s", "kA"},
			rows: [][]idem.Value{row("q\"b\\s/n\n\té😀", "1")},
		},
		{
			name:  "blank lines skipped, line numbers kept, CRLF and BOM",
			in:    "\ufeff{\"a\":1}\r\n\r\n   \n{\"a\":2}\r\n\n",
			cols:  []string{"a"},
			rows:  [][]idem.Value{row("1"), row("2")},
			lines: []int64{1, 4},
		},
		{
			name:  "columns given",
			in:    `{"b":1}` + "\n" + `{"a":2}` + "\n",
			opt:   Options{NoHeader: true, Columns: []string{"a", "b"}},
			cols:  []string{"a", "b"},
			rows:  [][]idem.Value{row(N, "1"), row("2", N)},
			lines: []int64{1, 2},
		},
		{name: "empty", in: "\n\n"},
		{name: "extra key", in: `{"a":1,"b":2}` + "\n" + `{"a":1, "zz":3}` + "\n", err: `f.jsonl:2:9: unexpected key "zz": not among the columns of f.jsonl`},
		{name: "extra key with given columns", in: `{"a":1,"c":2}` + "\n", opt: Options{NoHeader: true, Columns: []string{"a", "b"}}, err: `f.jsonl:1:8: unexpected key "c": not among the given columns`},
		{name: "malformed", in: `{"a":1}` + "\n" + `{"a":1,}` + "\n", err: "f.jsonl:2:8: malformed JSON"},
		{name: "truncated", in: `{"a":1}` + "\n" + `{"a":` + "\n", err: "f.jsonl:2:"},
		{name: "two objects on a line", in: `{"a":1} {"a":2}` + "\n", err: "f.jsonl:1:9: malformed JSON"},
		{name: "not an object", in: `{"a":1}` + "\n" + ` [1,2]` + "\n", err: "f.jsonl:2:2: expected a JSON object, got an array"},
		{name: "scalar first line", in: "42\n", err: "f.jsonl:1:1: expected a JSON object, got a number"},
		{name: "duplicate key in first object", in: `{"a":1,"a":2}` + "\n", err: `f.jsonl:1:8: duplicate key "a"`},
		{name: "duplicate key later", in: `{"a":1,"b":2}` + "\n" + `{"b":1,"b":2}` + "\n", err: `f.jsonl:2:8: duplicate key "b"`},
		{name: "empty key", in: `{"":1,"id":2}` + "\n", err: `f.jsonl:1:2: empty key: every key names a column`},
		{name: "empty key after others", in: `{"id":2, "" :1}` + "\n", err: `f.jsonl:1:10: empty key`},
		{name: "empty key later", in: `{"id":1}` + "\n" + `{"":1}` + "\n", err: `f.jsonl:2:2: unexpected key ""`},
		{name: "invalid UTF-8", in: `{"a":"x` + "\xff" + `"}` + "\n", err: "f.jsonl:1:8: invalid UTF-8"},
		{name: "lone surrogate", in: `{"a":"x\ud800y"}` + "\n", err: "f.jsonl:1:8: lone UTF-16 surrogate"},
		{name: "NUL escape", in: `{"a":"\u0000"}` + "\n", err: "f.jsonl:1:7: \\u0000 (NUL)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, map[string]string{"f.jsonl": tt.in})
			got, err := openAll([]string{"f.jsonl"}, nil, tt.opt)
			if tt.err != "" {
				wantInputError(t, err, tt.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkRows(t, got, tt.cols, tt.rows)
			if tt.lines != nil && !reflect.DeepEqual(got.lines, tt.lines) {
				t.Errorf("lines = %v, want %v", got.lines, tt.lines)
			}
		})
	}
}

func TestNDJSONExtension(t *testing.T) {
	inDir(t, map[string]string{"f.ndjson": `{"a":"1"}` + "\n"})
	got, err := openAll([]string{"f.ndjson"}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, got, []string{"a"}, [][]idem.Value{row("1")})
	got, err = openAll([]string{"f.ndjson"}, nil, Options{Format: "ndjson"})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, got, []string{"a"}, [][]idem.Value{row("1")})
}
