package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemhq/idem/sqlite"
)

// TestRunsContent: idem runs tells which runs' output still matches the
// data, which drifted (changed outside idem) and which a later run
// superseded, and --partition narrows the list.
func TestRunsContent(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "d5.csv", "id,day,v\n1,2024-01-05,a\n2,2024-01-05,b\n")
	write(t, dir, "d6.csv", "id,day,v\n3,2024-01-06,c\n4,2024-01-06,d\n")
	for _, args := range [][]string{
		{"load", "d5.csv", "--table", "t", "--key", "id", "--strategy", "replace-partition", "--partition", "day=2024-01-05"},
		{"load", "d6.csv", "--table", "t", "--key", "id", "--strategy", "replace-partition", "--partition", "day=2024-01-06"},
		{"load", "d5.csv", "--table", "u", "--key", "id"},
		{"load", "d6.csv", "--table", "u", "--key", "id", "--strategy", "replace"},
	} {
		if code, _, errs := runIn(t, dir, "", args...); code != 0 {
			t.Fatalf("%v: %s", args, errs)
		}
	}
	content := func(args ...string) map[string]string {
		t.Helper()
		code, out, errs := runIn(t, dir, "", append([]string{"runs", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("runs: %d %s", code, errs)
		}
		m := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r struct{ Table, Partition, Strategy, Content string }
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			m[r.Table+" "+r.Partition+" "+r.Strategy] = r.Content
		}
		return m
	}
	got := content()
	want := map[string]string{
		"t day=2024-01-05 replace-partition": "current",
		"t day=2024-01-06 replace-partition": "current",
		"u  upsert":                          "superseded",
		"u  replace":                         "current",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: content %q, want %q (all: %v)", k, got[k], v, got)
		}
	}

	tg, err := sqlite.Open(context.Background(), filepath.Join(dir, "idem.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if _, err := tg.DB().Exec(`UPDATE t SET v = 'tampered' WHERE id = 3`); err != nil {
		t.Fatal(err)
	}
	got = content("--table", "t", "--partition", "day=2024-01-06")
	if len(got) != 1 || got["t day=2024-01-06 replace-partition"] != "drifted" {
		t.Fatalf("after an outside edit: %v", got)
	}
	if got = content("--table", "t", "--partition", "day=2024-01-05"); got["t day=2024-01-05 replace-partition"] != "current" {
		t.Fatalf("the other partition is untouched: %v", got)
	}
	if _, err := tg.DB().Exec(`DROP TABLE u`); err != nil {
		t.Fatal(err)
	}
	if got = content("--table", "u"); got["u  replace"] != "gone" {
		t.Fatalf("dropped table: %v", got)
	}
	if code, out, _ := runIn(t, dir, "", "runs", "--no-check", "--table", "t"); code != 0 || strings.Contains(out, "drifted") {
		t.Fatalf("--no-check: %d %s", code, out)
	}
}

func TestRunsUnknownTable(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.csv", "id,v\n1,x\n")
	if code, _, errs := runIn(t, dir, "", "load", "a.csv", "--table", "t", "--key", "id"); code != 0 {
		t.Fatal(errs)
	}
	if code, _, errs := runIn(t, dir, "", "runs", "--table", "nope"); code != 2 || !strings.Contains(errs, `"nope"`) {
		t.Errorf("unknown table: exit %d %s", code, errs)
	}
	if code, _, errs := runIn(t, dir, "", "runs", "--table", "t", "--partition", "zz=1"); code != 2 || !strings.Contains(errs, `"zz"`) {
		t.Errorf("unknown partition column: exit %d %s", code, errs)
	}
	// A partition never loaded, of a real column: an empty list, not an error.
	if code, out, errs := runIn(t, dir, "", "runs", "--table", "t", "--partition", "v=y", "--json"); code != 0 || out != "" {
		t.Errorf("partition without runs: exit %d %q %s", code, out, errs)
	}
}

// TestRunsPartitionSuperseded: a partition run that a newer whole-table
// run overwrote is superseded, also when --partition (or --limit) leaves
// the newer run out of the list.
func TestRunsPartitionSuperseded(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "d1.csv", "id,d,v\n1,1,a\n2,1,b\n")
	write(t, dir, "all.csv", "id,d,v\n1,1,A\n3,2,c\n")
	for _, args := range [][]string{
		{"load", "d1.csv", "--table", "t", "--partition", "d=1"},
		{"load", "all.csv", "--table", "t", "--strategy", "replace"},
	} {
		if code, _, errs := runIn(t, dir, "", args...); code != 0 {
			t.Fatalf("%v: %s", args, errs)
		}
	}
	for _, args := range [][]string{
		{"--table", "t", "--partition", "d=1"},
		{"--partition", "d=1"},
		{"--table", "t", "--partition", "d=1", "--limit", "1"},
	} {
		code, out, errs := runIn(t, dir, "", append([]string{"runs", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("runs %v: %d %s", args, code, errs)
		}
		var r struct{ Partition, Content string }
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
			t.Fatalf("runs %v: %v: %s", args, err, out)
		}
		if r.Partition != "d=1" || r.Content != "superseded" {
			t.Errorf("runs %v: %+v, want the d=1 run superseded", args, r)
		}
	}
}
