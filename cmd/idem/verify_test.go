package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestChecksumCLI(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.csv", "id,day,v,at\n1,2024-01-01,1.50,2024-01-01T00:00:00Z\n2,2024-01-01,x,2024-01-01T00:00:00Z\n3,2024-01-02,,2024-01-02T00:00:00Z\n")
	if code, _, errs := runIn(t, dir, "", "load", "a.csv", "--table", "t", "--key", "id"); code != 0 {
		t.Fatal(errs)
	}
	code, out, _ := runIn(t, dir, "", "checksum", "--table", "t")
	if code != 0 || !strings.HasPrefix(out, "rows=3 fingerprint=") || len(strings.TrimSpace(out)) != len("rows=3 fingerprint=")+32 {
		t.Fatalf("checksum: %d %q", code, out)
	}
	fp := strings.TrimPrefix(strings.TrimSpace(out), "rows=3 fingerprint=")

	code, out, _ = runIn(t, dir, "", "checksum", "--table", "t", "--partition", "day=2024-01-01", "--json")
	var j map[string]any
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != 0 {
		t.Fatalf("json: %d %q %v", code, out, err)
	}
	if j["table"] != "t" || j["partition"] != "day=2024-01-01" || j["rows"] != float64(2) || j["fingerprint"] == fp {
		t.Fatalf("json fields: %v", j)
	}
	if code, _, _ := runIn(t, dir, "", "checksum", "--table", "t", "--expect", strings.ToUpper(fp)); code != 0 {
		t.Fatalf("--expect of the right fingerprint: exit %d", code)
	}
	if code, _, errs := runIn(t, dir, "", "checksum", "--table", "t", "--expect", strings.Repeat("0", 32)); code != 3 || !strings.Contains(errs, "does not match") {
		t.Fatalf("--expect mismatch: exit %d %s", code, errs)
	}
	// --exclude: a column left out no longer moves the fingerprint.
	_, ex1, _ := runIn(t, dir, "", "checksum", "--table", "t", "--exclude", "at")
	write(t, dir, "b.csv", "id,day,v,at\n1,2024-01-01,1.50,2030-01-01T00:00:00Z\n2,2024-01-01,x,2024-01-01T00:00:00Z\n3,2024-01-02,,2024-01-02T00:00:00Z\n")
	if code, _, errs := runIn(t, dir, "", "load", "b.csv", "--table", "t", "--key", "id"); code != 0 {
		t.Fatal(errs)
	}
	_, ex2, _ := runIn(t, dir, "", "checksum", "--table", "t", "--exclude", "at")
	_, all, _ := runIn(t, dir, "", "checksum", "--table", "t")
	if ex1 != ex2 || strings.Contains(all, fp) {
		t.Fatalf("exclude: %q vs %q; full %q (was %s)", ex1, ex2, all, fp)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--table", "nope"}, `table "nope" does not exist`},
		{[]string{"--table", "t", "--partition", "day=2031-01-01"}, `partition day=2031-01-01 of table "t" has no rows`},
		{[]string{"--table", "t", "--partition", "nocol=1"}, `no column "nocol"`},
		{[]string{"--table", "t", "--exclude", "zz"}, `no column "zz"`},
		{[]string{"--table", "t", "--partition", "day"}, `want COL=VALUE`},
		{[]string{}, `--table is required`},
	} {
		code, out, errs := runIn(t, dir, "", append([]string{"checksum"}, bad.args...)...)
		if code != 2 || !strings.Contains(errs, bad.want) || out != "" {
			t.Errorf("checksum %v: exit %d, stderr %q, stdout %q; want exit 2 naming %q", bad.args, code, errs, out, bad.want)
		}
	}
}

func TestVerifyBadCommand(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.csv", "id,v\n1,x\n")
	if code, _, errs := runIn(t, dir, "", "load", "a.csv", "--table", "t", "--key", "id"); code != 0 {
		t.Fatal(errs)
	}
	if code, _, errs := runIn(t, dir, "", "verify", "--table", "t", "--", "./does-not-exist"); code != 2 || !strings.Contains(errs, "cannot start") {
		t.Errorf("missing command: exit %d %s", code, errs)
	}
	if code, _, errs := runIn(t, dir, "", "verify", "--table", "t", "--", "sh", "-c", "exit 7"); code != 1 || !strings.Contains(errs, "exit status 7") {
		t.Errorf("failing command: exit %d %s", code, errs)
	}
	if code, _, errs := runIn(t, dir, "", "verify", "--table", "nope", "--", "true"); code != 2 || !strings.Contains(errs, `"nope"`) {
		t.Errorf("unknown table: exit %d %s", code, errs)
	}
	if code, _, _ := runIn(t, dir, "", "verify", "--table", "t", "true"); code != 2 {
		t.Errorf("command without --: exit %d", code)
	}
	code, out, errs := runIn(t, dir, "", "verify", "--table", "t", "--crash", "2", "--", "true")
	if code != 0 || !strings.Contains(errs, "--seed ") || !strings.Contains(out, "identical") {
		t.Errorf("--crash without --seed must print the seed: exit %d %q %q", code, out, errs)
	}
}

// TestVerifyCatchesNonIdempotentJobs runs the real job scripts of
// testdata/jobs against PostgreSQL: each is caught with exit 3 and a diff
// naming the rows it got wrong.
func TestVerifyCatchesNonIdempotentJobs(t *testing.T) {
	url, schema := pgtest.FreshSchema(t)
	base := strings.Split(url, "?")[0] + "?sslmode=disable"
	t.Setenv("JOB_DB", base)
	t.Setenv("PGOPTIONS", "-c search_path="+schema)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, ddl := range []string{
		`CREATE TABLE events (id int, kind text)`,
		`CREATE TABLE orders (id int PRIMARY KEY, amount numeric(10,2), loaded_at timestamptz)`,
		`CREATE TABLE scores (id int PRIMARY KEY, score numeric)`,
		`CREATE TABLE daily (id int, day date, total int, PRIMARY KEY (id, day))`,
		`INSERT INTO daily VALUES (9, '2024-01-06', 1)`,
	} {
		if _, err := conn.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	jobs, _ := filepath.Abs("testdata/jobs")
	dir := t.TempDir()
	verify := func(t *testing.T, args ...string) (int, idem.VerifyReport, string) {
		t.Helper()
		args = append([]string{"verify", "--to", url, "--json"}, args...)
		code, out, errs := runIn(t, dir, "", args...)
		var rep idem.VerifyReport
		if out != "" {
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("json: %v %q", err, out)
			}
		}
		return code, rep, errs
	}
	changedCols := func(d *idem.Diff) map[string][]string {
		m := map[string][]string{}
		for _, c := range d.SampleChanged {
			for _, col := range c.Columns {
				m[c.Key] = append(m[c.Key], col.Column)
			}
		}
		return m
	}

	t.Run("append", func(t *testing.T) {
		code, rep, errs := verify(t, "--table", "events", "--key", "id", "--", filepath.Join(jobs, "append.sh"))
		if code != 3 || rep.Identical || rep.Diff == nil {
			t.Fatalf("exit %d %s %+v", code, errs, rep)
		}
		d := rep.Diff
		if d.Added != 3 || d.Removed != 0 || d.Changed != 0 || !sameStrings(d.SampleAdded, []string{"id=1", "id=2", "id=3"}) || rep.DiffOf != "run 1 -> run 2" {
			t.Fatalf("diff: %+v", d)
		}
	})
	t.Run("now", func(t *testing.T) {
		code, rep, errs := verify(t, "--table", "orders", "--key", "id", "--", filepath.Join(jobs, "now.sh"))
		if code != 3 || rep.Diff == nil {
			t.Fatalf("exit %d %s", code, errs)
		}
		want := map[string][]string{"id=1": {"loaded_at"}, "id=2": {"loaded_at"}, "id=3": {"loaded_at"}}
		if rep.Diff.Changed != 3 || !reflect.DeepEqual(changedCols(rep.Diff), want) {
			t.Fatalf("diff: %+v", rep.Diff)
		}
		// The column a pipeline may vary can be excluded: then it passes.
		if code, _, errs := verify(t, "--table", "orders", "--key", "id", "--exclude", "loaded_at", "--", filepath.Join(jobs, "now.sh")); code != 0 {
			t.Fatalf("with --exclude loaded_at: exit %d %s", code, errs)
		}
	})
	t.Run("random", func(t *testing.T) {
		code, rep, errs := verify(t, "--table", "scores", "--key", "id", "--", filepath.Join(jobs, "random.sh"))
		if code != 3 || rep.Diff == nil {
			t.Fatalf("exit %d %s", code, errs)
		}
		want := map[string][]string{"id=1": {"score"}, "id=2": {"score"}, "id=3": {"score"}, "id=4": {"score"}, "id=5": {"score"}}
		if rep.Diff.Changed != 5 || !reflect.DeepEqual(changedCols(rep.Diff), want) {
			t.Fatalf("diff: %+v", rep.Diff)
		}
	})
	t.Run("delete_insert", func(t *testing.T) {
		job := filepath.Join(jobs, "delete_insert.sh")
		// Clean reruns agree: only a crash shows the problem.
		if code, rep, errs := verify(t, "--table", "daily", "--key", "id,day", "--", job); code != 0 || !rep.Identical {
			t.Fatalf("clean runs: exit %d %s", code, errs)
		}
		code, rep, errs := verify(t, "--table", "daily", "--key", "id,day", "--partition", "day=2024-01-05", "--crash", "5", "--seed", "3", "--", job)
		if code != 3 || rep.Diff == nil || !strings.Contains(rep.DiffOf, "state after kill") {
			t.Fatalf("exit %d %s %+v", code, errs, rep)
		}
		want := []string{"id=1,day=2024-01-05", "id=2,day=2024-01-05", "id=3,day=2024-01-05", "id=4,day=2024-01-05"}
		if rep.Diff.Removed != 4 || rep.Diff.Added != 0 || !sameStrings(rep.Diff.SampleRemoved, want) {
			t.Fatalf("diff: %+v", rep.Diff)
		}
		last := rep.Kills[len(rep.Kills)-1]
		if !last.Killed || last.AfterKill == rep.Fingerprints[0] {
			t.Fatalf("the report must show the kill that exposed it: %+v", rep.Kills)
		}
	})
}

func sameStrings(a, b []string) bool {
	a, b = append([]string{}, a...), append([]string{}, b...)
	sort.Strings(a)
	sort.Strings(b)
	return reflect.DeepEqual(a, b)
}

func TestDiffCLI(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.csv", "id,v,n\n1,x,1.50\n2,y,2\n3,z,3\n")
	write(t, dir, "b.csv", "id,v,n\n1,x,1.5\n2,Y,2\n4,w,4\n")
	for _, args := range [][]string{
		{"load", "a.csv", "--table", "a", "--key", "id"},
		{"load", "a.csv", "--table", "a2", "--key", "id"},
		{"load", "b.csv", "--table", "b", "--key", "id"},
	} {
		if code, _, errs := runIn(t, dir, "", args...); code != 0 {
			t.Fatal(errs)
		}
	}
	if code, out, errs := runIn(t, dir, "", "diff", "--table", "a", "--with-table", "a2", "--key", "id"); code != 0 || strings.TrimSpace(out) != "identical" {
		t.Fatalf("identical tables: exit %d %q %s", code, out, errs)
	}
	code, out, errs := runIn(t, dir, "", "diff", "--table", "a", "--with-table", "b", "--key", "id", "--json")
	var d idem.Diff
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 3 {
		t.Fatalf("exit %d %q %s %v", code, out, errs, err)
	}
	// 1.50 = 1.5: only id 2 changed (column v), 3 removed, 4 added.
	if d.Changed != 1 || d.Removed != 1 || d.Added != 1 || d.SampleChanged[0].Key != "id=2" ||
		d.SampleChanged[0].Columns[0].Column != "v" || d.SampleRemoved[0] != "id=3" || d.SampleAdded[0] != "id=4" {
		t.Fatalf("diff: %+v", d)
	}
	// Across targets: the same rows in another database are identical.
	if code, _, errs := runIn(t, dir, "", "load", "a.csv", "--to", "sqlite:other.db", "--table", "a", "--key", "id"); code != 0 {
		t.Fatal(errs)
	}
	if code, out, errs := runIn(t, dir, "", "diff", "--table", "a", "--with", "sqlite:other.db"); code != 0 {
		t.Fatalf("across targets: exit %d %q %s", code, out, errs)
	}
	for _, bad := range [][]string{
		{"diff", "--table", "a"},
		{"diff", "--table", "a", "--with-table", "nope"},
		{"diff", "--table", "a", "--with-table", "b", "--key", "zz"},
	} {
		if code, _, errs := runIn(t, dir, "", bad...); code != 2 {
			t.Errorf("%v: exit %d %s, want 2", bad, code, errs)
		}
	}
}
