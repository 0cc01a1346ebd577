package source

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func gz(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func zst(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestCompressedRoundTrip(t *testing.T) {
	csv := "id,note\n1,\"a,b\"\n2,\n3,\"line\nbreak\"\n"
	// Big enough to span several compressed blocks and read buffers.
	var big strings.Builder
	big.WriteString("id,note\n")
	for i := 0; i < 50_000; i++ {
		big.WriteString("7,\"x, \"\"y\"\"\"\n")
	}
	jsonl := `{"id":1,"note":"a,b"}` + "\n" + `{"id":2}` + "\n"
	want := [][]idem.Value{row("1", "a,b"), row("2", N), row("3", "line\nbreak")}
	inDir(t, map[string]string{
		"a.csv.gz":     gz(t, csv),
		"b.CSV.ZST":    zst(t, csv),
		"c.jsonl.gz":   gz(t, jsonl),
		"d.ndjson.zst": zst(t, jsonl),
		"big.csv.zst":  zst(t, big.String()),
		"big.csv.gz":   gz(t, big.String()),
	})
	for _, f := range []string{"a.csv.gz", "b.CSV.ZST"} {
		got, err := openAll([]string{f}, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, got, []string{"id", "note"}, want)
		if !reflect.DeepEqual(got.lines, []int64{2, 3, 4}) || got.files[0] != f {
			t.Errorf("%s: positions %v %v", f, got.files, got.lines)
		}
	}
	for _, f := range []string{"c.jsonl.gz", "d.ndjson.zst"} {
		got, err := openAll([]string{f}, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, got, []string{"id", "note"}, want[:2])
	}
	for _, f := range []string{"big.csv.gz", "big.csv.zst"} {
		got, err := openAll([]string{f}, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.rows) != 50_000 || got.rows[49_999][1].S != `x, "y"` {
			t.Fatalf("%s: %d rows", f, len(got.rows))
		}
	}
}

func TestCorruptCompressed(t *testing.T) {
	good := gz(t, "a\n"+strings.Repeat("1234567890\n", 1000))
	flipped := []byte(good)
	flipped[len(flipped)/2] ^= 0xff
	zgood := zst(t, "a\n"+strings.Repeat("1234567890\n", 1000))
	zbad := []byte(zgood)
	zbad[len(zbad)-6] ^= 0xff
	inDir(t, map[string]string{
		"plain.csv.gz":      "a,b\n1,2\n",
		"truncated.csv.gz":  good[:len(good)/2],
		"flipped.csv.gz":    string(flipped),
		"plain.csv.zst":     "a,b\n1,2\n",
		"truncated.csv.zst": zgood[:len(zgood)-9],
		"flipped.csv.zst":   string(zbad),
	})
	for _, tt := range []struct{ file, err string }{
		{"plain.csv.gz", "plain.csv.gz: not gzip data"},
		{"truncated.csv.gz", "truncated.csv.gz:"},
		{"flipped.csv.gz", "flipped.csv.gz:"},
		{"plain.csv.zst", "plain.csv.zst:"},
		{"truncated.csv.zst", "truncated.csv.zst:"},
		{"flipped.csv.zst", "flipped.csv.zst:"},
	} {
		_, err := openAll([]string{tt.file}, nil, Options{})
		wantInputError(t, err, tt.err)
	}
}

func TestMultipleFiles(t *testing.T) {
	inDir(t, map[string]string{
		"1.csv":      "id,name,qty\n1,a,10\n2,b,\n",
		"2.csv":      "qty,id,name\n30,3,\"c\"\n",
		"3.csv":      "",
		"4.jsonl":    `{"name":"d","id":4}` + "\n\n" + `{"qty":50,"id":5,"name":"e"}` + "\n",
		"5.tsv":      "name\tqty\tid\nf\t60\t6\n",
		"bad.csv":    "id,name,weight\n9,z,1\n",
		"bad.jsonl":  `{"id":1,"name":"x","colour":"red"}` + "\n",
		"short.csv":  "id,name\n9,z\n",
		"header.csv": "id,qty,name\n",
	})
	got, err := openAll([]string{"1.csv", "2.csv", "3.csv", "header.csv", "4.jsonl", "5.tsv"}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, got, []string{"id", "name", "qty"}, [][]idem.Value{
		row("1", "a", "10"), row("2", "b", N), row("3", "c", "30"),
		row("4", "d", N), row("5", "e", "50"), row("6", "f", "60"),
	})
	wantFiles := []string{"1.csv", "1.csv", "2.csv", "4.jsonl", "4.jsonl", "5.tsv"}
	wantLines := []int64{2, 3, 2, 1, 3, 2}
	if !reflect.DeepEqual(got.files, wantFiles) || !reflect.DeepEqual(got.lines, wantLines) {
		t.Errorf("positions %v %v, want %v %v", got.files, got.lines, wantFiles, wantLines)
	}

	// An empty first file does not decide the columns.
	got, err = openAll([]string{"3.csv", "2.csv"}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, got, []string{"qty", "id", "name"}, [][]idem.Value{row("30", "3", "c")})

	_, err = openAll([]string{"1.csv", "bad.csv"}, nil, Options{})
	wantInputError(t, err, `bad.csv:1: columns differ from 1.csv: missing "qty"; unexpected "weight"`)
	_, err = openAll([]string{"1.csv", "short.csv"}, nil, Options{})
	wantInputError(t, err, `short.csv:1: columns differ from 1.csv: missing "qty"`)
	_, err = openAll([]string{"1.csv", "bad.jsonl"}, nil, Options{})
	wantInputError(t, err, `bad.jsonl:1:20: unexpected key "colour"`)

	// The first file's rows come out before a later file's problem shows.
	rr, err := Open([]string{"1.csv", "bad.csv"}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, _, err = rr.Read()
		if err != nil {
			break
		}
		n++
	}
	rr.Close()
	if n != 2 || !idem.IsInputError(err) {
		t.Fatalf("read %d rows then %v", n, err)
	}
}

func TestExpand(t *testing.T) {
	inDir(t, map[string]string{
		"data/b.csv":          "x\n",
		"data/a.csv":          "x\n",
		"data/c.txt":          "x\n",
		"data/sub.csv/inner":  "x\n",
		"data/2024/01.csv":    "x\n",
		"data/2023/12.csv":    "x\n",
		"report[2024].csv":    "x\n",
		"data/empty/.keep":    "",
		"data/.hidden.csv":    "not, the, same, columns\n",
		"weird name, 1.jsonl": "{}\n",
	})
	got, err := Expand([]string{"data/*.csv", "data/a.csv", "-", "data/*/*.csv", "./data/b.csv", "-", "report[2024].csv", "weird name, 1.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"data/a.csv", "data/b.csv", "-", "data/2023/12.csv", "data/2024/01.csv", "report[2024].csv", "weird name, 1.jsonl"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Expand = %q, want %q", got, want)
	}
	for _, tt := range []struct {
		pattern, err string
	}{
		{"missing.csv", "missing.csv: no such file"},
		{"data/*.parquet", "data/*.parquet: no files match"},
		{"data/empty/*", "data/empty/*: no files match"},
		{"data/.*.csv", ""},
		{"data", "data: is a directory"},
		{"data/[", "data/[: bad glob pattern"},
	} {
		files, err := Expand([]string{tt.pattern})
		if tt.err == "" {
			if err != nil || len(files) != 1 {
				t.Errorf("Expand(%q) = %q, %v", tt.pattern, files, err)
			}
			continue
		}
		wantInputError(t, err, tt.err)
		_, err = Open([]string{"data/a.csv", tt.pattern}, nil, Options{})
		wantInputError(t, err, tt.err)
	}

	// Open reads the expansion in order.
	res, err := openAll([]string{"data/*/*.csv", "data/*.csv"}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.rows) != 0 || !reflect.DeepEqual(res.cols, []string{"x"}) {
		t.Fatalf("got %v", res)
	}
}

func TestStdin(t *testing.T) {
	in := "a,b\n1,\"\"\n"
	got, err := openAll([]string{"-"}, strings.NewReader(in), Options{Format: "csv"})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, got, []string{"a", "b"}, [][]idem.Value{row("1", "")})
	if got.files[0] != "-" || got.lines[0] != 2 {
		t.Errorf("pos = %s:%d", got.files[0], got.lines[0])
	}

	// Compressed stdin is recognised by its magic number.
	for _, data := range []string{gz(t, in), zst(t, in)} {
		got, err = openAll([]string{"-"}, strings.NewReader(data), Options{Format: "csv"})
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, got, []string{"a", "b"}, [][]idem.Value{row("1", "")})
	}

	got, err = openAll([]string{"-"}, strings.NewReader(`{"k":"v"}`), Options{Format: "ndjson"})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, got, []string{"k"}, [][]idem.Value{row("v")})

	_, err = openAll([]string{"-"}, strings.NewReader(in), Options{})
	wantInputError(t, err, "needs --format")
	_, err = openAll([]string{"-"}, strings.NewReader("a,b\n1\n"), Options{Format: "csv"})
	wantInputError(t, err, "-:2:2: expected 2 fields, got 1")
}

func TestDigest(t *testing.T) {
	dir := inDir(t, map[string]string{
		"a.csv":    "id\n1\n",
		"copy.csv": "id\n1\n",
		"b.csv":    "id\n2\n",
		"ab":       "ab",
		"c":        "c",
		"a":        "a",
		"bc":       "bc",
		"empty":    "",
	})
	d := func(files ...string) string {
		t.Helper()
		s, err := Digest(files)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 64 {
			t.Fatalf("digest %q is not hex SHA-256", s)
		}
		return s
	}
	if d("a.csv") != d("a.csv") {
		t.Error("digest not stable")
	}
	if d("a.csv") != d("copy.csv") || d("a.csv") != d(filepath.Join(dir, "a.csv")) {
		t.Error("digest depends on the name")
	}
	if d("a.csv") == d("b.csv") {
		t.Error("digest blind to content")
	}
	if d("a.csv", "b.csv") == d("b.csv", "a.csv") {
		t.Error("digest blind to order")
	}
	if d("ab", "c") == d("a", "bc") {
		t.Error("digest blind to file boundaries")
	}
	if d("a.csv") == d("a.csv", "empty") {
		t.Error("digest blind to an empty file")
	}
	if err := os.WriteFile("b.csv", []byte("id\n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d("b.csv") != d("a.csv") {
		t.Error("digest of equal bytes differs")
	}
	if _, err := Digest([]string{"missing"}); !idem.IsInputError(err) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Digest([]string{"-"}); err == nil {
		t.Error("digest of stdin should fail")
	}
}

func TestSpool(t *testing.T) {
	dir := t.TempDir()
	data := strings.Repeat("a,b\n1,2\n", 100_000)
	path, err := Spool(strings.NewReader(data), dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != dir {
		t.Errorf("spooled to %s, want it in %s", path, dir)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != data {
		t.Fatalf("spooled content differs (%v)", err)
	}

	// The intended use: digest the spool, then parse it as "-".
	if _, err := Digest([]string{path}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := openAll([]string{"-"}, f, Options{Format: "csv"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.rows) != 199_999 || res.files[0] != "-" {
		t.Fatalf("%d rows from %s", len(res.rows), res.files[0])
	}

	// A failing reader leaves no file behind.
	_, err = Spool(&failReader{}, dir)
	if err == nil {
		t.Fatal("want error")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %d", len(entries))
	}
}

type failReader struct{ n int }

func (f *failReader) Read(p []byte) (int, error) {
	if f.n++; f.n > 3 {
		return 0, errors.New("boom")
	}
	return copy(p, "x,y\n"), nil
}
