package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func runIn(t *testing.T, dir string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadJSONFields(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.csv", "id,v\n1,x\n2,y\n")
	code, out, errs := runIn(t, dir, "", "load", "a.csv", "--table", "t", "--key", "id", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// SPEC.md's fields, plus fast_path (idem's addition: says the rerun
	// was proved a no-op without writing).
	want := []string{"deleted", "duration_ms", "fast_path", "input_fingerprint", "inserted", "output_fingerprint", "partition", "rows_in", "run_id", "skipped", "strategy", "table", "unchanged", "updated"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("JSON fields %v, want %v", keys, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "idem.db")); err != nil {
		t.Fatal("default target sqlite:idem.db was not created in the working directory")
	}
	if errs != "" {
		t.Fatalf("stderr not empty when not a terminal: %q", errs)
	}
}

func TestLoadStdinGzipGlobTemplates(t *testing.T) {
	dir := t.TempDir()
	// stdin needs --format, and is digested for the fast path like a file.
	for i := 0; i < 2; i++ {
		code, out, errs := runIn(t, dir, "id,v\n1,a\n", "load", "-", "--format", "csv", "--table", "s", "--key", "id")
		if code != 0 {
			t.Fatalf("stdin: %d %s", code, errs)
		}
		if i == 1 && !strings.Contains(out, "0 inserted") {
			t.Fatalf("stdin rerun: %s", out)
		}
	}
	if code, _, errs := runIn(t, dir, "id\n1\n", "load", "-", "--table", "s2", "--key", "id"); code != 2 || !strings.Contains(errs, "format") {
		t.Fatalf("stdin without --format: %d %s", code, errs)
	}
	// gzip and a glob over two days, with the execution date in the
	// file name, the partition and a stamp.
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte("id,day\n1,2024-01-05\n2,2024-01-05\n"))
	w.Close()
	write(t, dir, "orders_2024-01-05.csv.gz", gz.String())
	code, out, errs := runIn(t, dir, "", "load", "orders_{{.ExecutionDate}}.csv*", "--execution-date", "2024-01-05",
		"--table", "o", "--partition", "day={{.ExecutionDate}}", "--stamp", "window_end={{.DataIntervalEnd}}", "--json")
	if code != 0 {
		t.Fatalf("template load: %d %s", code, errs)
	}
	if !strings.Contains(out, `"partition":"day=2024-01-05"`) || !strings.Contains(out, `"inserted":2`) {
		t.Fatalf("template load: %s", out)
	}
	code, out, _ = runIn(t, dir, "", "runs", "--json")
	if code != 0 || !strings.Contains(out, `"execution_date":"2024-01-05"`) {
		t.Fatalf("runs: %s", out)
	}
	write(t, dir, "p1.csv", "id,v\n1,a\n")
	write(t, dir, "p2.csv", "v,id\nb,2\n")
	code, out, errs = runIn(t, dir, "", "load", "p*.csv", "--table", "g", "--key", "id")
	if code != 0 || !strings.Contains(out, "2 inserted") {
		t.Fatalf("glob: %d %s %s", code, out, errs)
	}
}

func TestInterval(t *testing.T) {
	data, err := templateData("2024-01-31", "1d")
	if err != nil || data["DataIntervalEnd"] != "2024-02-01" || data["DataIntervalStart"] != "2024-01-31" {
		t.Fatalf("1d: %v %v", data, err)
	}
	data, err = templateData("2024-01-31", "6h")
	if err != nil || data["DataIntervalEnd"] != "2024-01-31T06:00:00Z" {
		t.Fatalf("6h: %v %v", data, err)
	}
	if _, err := templateData("2024-01-31", "-1d"); err == nil {
		t.Fatal("negative interval accepted")
	}
	if _, err := templateData("31/01/2024", "1d"); err == nil {
		t.Fatal("bad date accepted")
	}
}

// TestErrorFieldOfReorderedFile: a later file may list the columns in
// another order; an error in it names the field where the value is in
// that file, not the column's place in the first file.
func TestErrorFieldOfReorderedFile(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"m1.csv": "a,b\n1,x\n", "m2.csv": "b,a\ny,2\nz,notnum\n", "j.jsonl": "{\"b\":\"y\",\"a\":\"notnum\"}\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, errs := runIn(t, dir, "", "load", "m1.csv", "--to", "sqlite:t.db", "--table", "t", "--strategy", "replace"); code != 0 {
		t.Fatalf("first load: %d %s", code, errs)
	}
	code, _, errs := runIn(t, dir, "", "load", "m1.csv", "m2.csv", "--to", "sqlite:t.db", "--table", "t", "--strategy", "replace")
	if code != 2 || !strings.Contains(errs, `m2.csv:3:2: column "a"`) {
		t.Fatalf("exit %d: %s; want the error at m2.csv:3:2", code, errs)
	}
	// A JSON object's members have no field number: the column is named.
	code, _, errs = runIn(t, dir, "", "load", "j.jsonl", "--to", "sqlite:t.db", "--table", "t", "--strategy", "replace")
	if code != 2 || !strings.Contains(errs, `j.jsonl:1: column "a"`) {
		t.Fatalf("exit %d: %s; want j.jsonl:1 and the column", code, errs)
	}
}
