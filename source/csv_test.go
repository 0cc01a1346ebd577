package source

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/idemhq/idem"
)

func TestCSV(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		opt   Options
		file  string // default f.csv
		cols  []string
		rows  [][]idem.Value
		lines []int64
		err   string // substring of the error; the error must be an InputError
	}{
		{
			name:  "plain",
			in:    "a,b\n1,2\n3,4\n",
			cols:  []string{"a", "b"},
			rows:  [][]idem.Value{row("1", "2"), row("3", "4")},
			lines: []int64{2, 3},
		},
		{
			name: "no final newline",
			in:   "a,b\n1,2",
			cols: []string{"a", "b"},
			rows: [][]idem.Value{row("1", "2")},
		},
		{
			name: "quoted delimiters",
			in:   "a,b\n\"x,y\",\"z,,\"\n",
			cols: []string{"a", "b"},
			rows: [][]idem.Value{row("x,y", "z,,")},
		},
		{
			name: "doubled quotes",
			in:   "a,b\n\"say \"\"hi\"\"\",\"\"\"\"\n",
			cols: []string{"a", "b"},
			rows: [][]idem.Value{row(`say "hi"`, `"`)},
		},
		{
			name:  "embedded newlines move line numbers",
			in:    "a,b\n\"one\ntwo\nthree\",x\ny,\"p\nq\"\nlast,1\n",
			cols:  []string{"a", "b"},
			rows:  [][]idem.Value{row("one\ntwo\nthree", "x"), row("y", "p\nq"), row("last", "1")},
			lines: []int64{2, 5, 7},
		},
		{
			name:  "CRLF line ends, CRLF kept inside quotes",
			in:    "a,b\r\n1,2\r\n\"x\r\ny\",\r\n",
			cols:  []string{"a", "b"},
			rows:  [][]idem.Value{row("1", "2"), row("x\r\ny", N)},
			lines: []int64{2, 3},
		},
		{
			name: "BOM dropped",
			in:   "\ufeffa,b\n1,2\n",
			cols: []string{"a", "b"},
			rows: [][]idem.Value{row("1", "2")},
		},
		{
			name: "BOM before a quoted header",
			in:   "\ufeff\"a\",b\n1,2\n",
			cols: []string{"a", "b"},
			rows: [][]idem.Value{row("1", "2")},
		},
		{
			name: "unquoted empty is NULL, quoted empty is empty",
			in:   "a,b,c,d\n,\"\",x,\n\"\",,,\"\"\n",
			cols: []string{"a", "b", "c", "d"},
			rows: [][]idem.Value{row(N, "", "x", N), row("", N, N, "")},
		},
		{
			name: "null marker",
			in:   "a,b,c\n\\N,,\"\\N\"\nx\\N,\\N,\"\"\n",
			opt:  Options{Null: `\N`, HasNull: true},
			cols: []string{"a", "b", "c"},
			rows: [][]idem.Value{row(N, "", `\N`), row(`x\N`, N, "")},
		},
		{
			name: "explicit empty null marker is the default",
			in:   "a,b\n,\"\"\n",
			opt:  Options{Null: "", HasNull: true},
			cols: []string{"a", "b"},
			rows: [][]idem.Value{row(N, "")},
		},
		{
			name: "spaces are data",
			in:   " a , b \n 1 ,\" 2 \"\n",
			cols: []string{" a ", " b "},
			rows: [][]idem.Value{row(" 1 ", " 2 ")},
		},
		{
			name: "quote after a field started quoted and unquoted fields mixed",
			in:   "a,b,c\nplain,\"q\",tail\n",
			cols: []string{"a", "b", "c"},
			rows: [][]idem.Value{row("plain", "q", "tail")},
		},
		{
			name:  "blank line in a one-column file is NULL",
			in:    "a\nx\n\ny\n",
			cols:  []string{"a"},
			rows:  [][]idem.Value{row("x"), row(N), row("y")},
			lines: []int64{2, 3, 4},
		},
		{
			name: "unicode",
			in:   "名前,b\nÉté,😀\n",
			cols: []string{"名前", "b"},
			rows: [][]idem.Value{row("Été", "😀")},
		},
		{
			name: "header only",
			in:   "a,b\n",
			cols: []string{"a", "b"},
		},
		{
			name: "empty file",
			in:   "",
		},
		{
			name:  "no header",
			in:    "1,2\n,\"\"\n",
			opt:   Options{NoHeader: true, Columns: []string{"x", "y"}},
			cols:  []string{"x", "y"},
			rows:  [][]idem.Value{row("1", "2"), row(N, "")},
			lines: []int64{1, 2},
		},
		{
			name: "tsv",
			file: "f.tsv",
			in:   "a\tb\tc\n\"x\ty\"\t\t\"\"\n1,2\t\"q\"\"\"\t3\n",
			cols: []string{"a", "b", "c"},
			rows: [][]idem.Value{row("x\ty", N, ""), row("1,2", `q"`, "3")},
		},
		{
			name: "format option overrides the extension",
			file: "f.txt",
			in:   "a\tb\n1\t2\n",
			opt:  Options{Format: "tsv"},
			cols: []string{"a", "b"},
			rows: [][]idem.Value{row("1", "2")},
		},
		{name: "too few fields", in: "a,b,c,d\n1,2,3,4\n1,2,3\n", err: "f.csv:3:4: expected 4 fields, got 3"},
		{name: "too many fields", in: "a,b,c,d\n1,2,3,4,5\n", err: "f.csv:2:5: expected 4 fields, got 5"},
		{name: "too many fields, quoted", in: "a,b\n\"1\",\"2\",\"3\"\n", err: "f.csv:2:3: expected 2 fields, got 3"},
		{name: "ragged after multi-line record", in: "a,b\n\"x\ny\",1\n1\n", err: "f.csv:4:2: expected 2 fields, got 1"},
		{name: "blank line", in: "a,b\n1,2\n\n3,4\n", err: "f.csv:3:2: expected 2 fields, got 1 (blank line)"},
		{name: "unterminated quote", in: "a,b\n1,2\n3,\"abc\ndef\n", err: `f.csv:3:2: column "b": unterminated quoted field`},
		{name: "unterminated quote in header", in: "\"a,b\n", err: "f.csv:1:1: unterminated quoted field"},
		{name: "quote inside unquoted field", in: "a,b\n1,x\"y\"\n", err: `f.csv:2:2: column "b": unexpected quote`},
		{name: "quote inside unquoted field after quoted one", in: "a,b\n\"1\",x\"y\n", err: `f.csv:2:2: column "b": unexpected quote`},
		{name: "text after closing quote", in: "a,b\n\"ab\"c,1\n", err: `f.csv:2:1: column "a": unexpected text after closing quote`},
		{name: "text after closing quote on a later line", in: "a,b\n\"a\nb\"c,1\n", err: `f.csv:3:1: column "a": unexpected text after closing quote`},
		{name: "invalid UTF-8", in: "a,b\n1,ok\xff\n", err: `f.csv:2:2: column "b": invalid UTF-8`},
		{name: "invalid UTF-8 in a quoted line", in: "a,b\n\"x\ny\",\"\xc3\"\n", err: `f.csv:3:2: column "b": invalid UTF-8`},
		{name: "invalid UTF-8 in header", in: "a,\xfe\n", err: "f.csv:1:2: invalid UTF-8"},
		{name: "NUL byte", in: "a,b\n1,x\x00y\n", err: `f.csv:2:2: column "b": NUL byte`},
		{name: "lone carriage return", in: "a,b\n1,x\ry\n", err: `f.csv:2:2: column "b": carriage return`},
		{name: "CR line ends", in: "a,b\r1,2\r", err: "f.csv:1:2: carriage return"},
		{name: "duplicate header name", in: "a,b,a\n1,2,3\n", err: `f.csv:1:3: duplicate column name "a"`},
		{name: "empty header name", in: "a,,c\n", err: "f.csv:1:2: empty column name"},
		{name: "quoted empty header name", in: "a,\"\"\n", err: "f.csv:1:2: empty column name"},
		{name: "no header, wrong count", in: "1,2,3\n", opt: Options{NoHeader: true, Columns: []string{"x", "y"}}, err: "f.csv:1:3: expected 2 fields, got 3"},
		{name: "format unknown", file: "f.txt", in: "a\n", err: "f.txt: cannot tell the format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := tt.file
			if file == "" {
				file = "f.csv"
			}
			inDir(t, map[string]string{file: tt.in})
			got, err := openAll([]string{file}, nil, tt.opt)
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
			for _, f := range got.files {
				if f != file {
					t.Errorf("Pos.File = %q, want %q", f, file)
				}
			}
		})
	}
}

// Lines longer than the read buffer take another path through the reader.
func TestCSVLongFields(t *testing.T) {
	big := strings.Repeat("x", 3*bufSize+17)
	quoted := strings.Repeat("ab,\"\"\n", bufSize/2)
	want := strings.ReplaceAll(quoted, `""`, `"`)
	in := "a,b\n" + big + "," + big + "\n\"" + quoted + "\",1\nz,2\n"
	inDir(t, map[string]string{"f.csv": in})
	got, err := openAll([]string{"f.csv"}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, got, []string{"a", "b"}, [][]idem.Value{row(big, big), row(want, "1"), row("z", "2")})
	if wantLine := int64(3 + bufSize/2 + 1); got.lines[2] != wantLine {
		t.Errorf("line after long quoted field = %d, want %d", got.lines[2], wantLine)
	}
}

func TestCSVRecordLimit(t *testing.T) {
	old := maxRecord
	maxRecord = 1 << 20
	defer func() { maxRecord = old }()
	in := "a\n1\n\"" + strings.Repeat("line\n", 300_000)
	inDir(t, map[string]string{"f.csv": in})
	_, err := openAll([]string{"f.csv"}, nil, Options{})
	wantInputError(t, err, `f.csv:3:1: column "a": quoted field longer than 1 MiB`)

	in = "a\n" + strings.Repeat("y", 2<<20) + "\n"
	inDir(t, map[string]string{"f.csv": in})
	_, err = openAll([]string{"f.csv"}, nil, Options{})
	wantInputError(t, err, "f.csv:2: line longer than 1 MiB")
}

// Callers keep values across reads; the reused slice must not drag the
// strings along.
func TestCSVValuesSurviveNextRead(t *testing.T) {
	inDir(t, map[string]string{"f.csv": "a,b\nfirst,\"q,1\"\nsecond,\"q,2\"\nthird,3\n"})
	rr, err := Open([]string{"f.csv"}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	var kept [][]idem.Value
	for {
		vals, _, err := rr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, append([]idem.Value(nil), vals...))
	}
	want := [][]idem.Value{row("first", "q,1"), row("second", "q,2"), row("third", "3")}
	if !reflect.DeepEqual(kept, want) {
		t.Fatalf("kept %v, want %v", kept, want)
	}
}

func TestReadErrorIsSticky(t *testing.T) {
	inDir(t, map[string]string{"f.csv": "a,b\n1,2\n1\n3,4\n"})
	rr, err := Open([]string{"f.csv"}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	if _, _, err := rr.Read(); err != nil {
		t.Fatal(err)
	}
	_, _, err1 := rr.Read()
	_, _, err2 := rr.Read()
	wantInputError(t, err1, "f.csv:3:2")
	if err1 != err2 {
		t.Fatalf("second Read after an error = %v, want the same error", err2)
	}
	if err := rr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rr.Read(); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Read after Close = %v", err)
	}
}

func TestOptionErrors(t *testing.T) {
	inDir(t, map[string]string{"f.csv": "a\n1\n"})
	for _, tt := range []struct {
		opt Options
		err string
	}{
		{Options{Format: "xml"}, `unknown format "xml"`},
		{Options{NoHeader: true}, "--no-header needs --columns"},
		{Options{Columns: []string{"a"}}, "--columns needs --no-header"},
		{Options{NoHeader: true, Columns: []string{"a", "a"}}, `duplicate column name "a"`},
		{Options{NoHeader: true, Columns: []string{""}}, "empty column name"},
		{Options{Null: `"x"`, HasNull: true}, "--null must not contain a quote"},
		{Options{Null: "a,b", HasNull: true}, "--null must not contain the field delimiter"},
	} {
		_, err := openAll([]string{"f.csv"}, nil, tt.opt)
		wantInputError(t, err, tt.err)
	}
	_, err := openAll(nil, nil, Options{})
	wantInputError(t, err, "no input files")
}
