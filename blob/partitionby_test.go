package blob

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/source"
)

// concatDays writes the days' CSVs as one file (one header).
func concatDays(t *testing.T, files ...string) string {
	t.Helper()
	var b strings.Builder
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		if i > 0 {
			s = s[strings.IndexByte(s, '\n')+1:]
		}
		b.WriteString(s)
	}
	p := filepath.Join(t.TempDir(), "days.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPartitionByOneLoad: with partition_by, one load without --partition
// writes every partition, with the same data files as one load per
// partition; an identical rerun takes the fast path, a forced one writes
// no data, and a change to one row rewrites only that row's partition.
func TestPartitionByOneLoad(t *testing.T) {
	backends(t, func(t *testing.T, newURL func(t *testing.T) string) {
		days := []int{3, 4, 5}
		var files []string
		for _, d := range days {
			files = append(files, dayCSV(t, d, 3000, 0))
		}
		all := concatDays(t, files...)
		spec := idem.LoadSpec{Table: "orders", Strategy: idem.Replace}

		base := openT(t, withParam(newURL(t), "partition_by", "order_date"))
		cs := &countingStore{Store: base.st}
		tg := &Target{st: cs, codec: base.codec, rowsPerFile: base.rowsPerFile, partitionBy: base.partitionBy}
		if r := loadFile(t, tg, spec, all); r.Inserted != 9000 {
			t.Fatalf("first load: %+v", r)
		}
		first := snapshot(t, cs, tableDir("orders"))
		for _, d := range days {
			if _, ok := first[tableDir("orders")+"order_date=2024-01-0"+string(rune('0'+d))+"/"+manifestName]; !ok {
				t.Fatalf("no partition folder for day %d: %v", d, first)
			}
		}

		// The same data files as loading each day with --partition.
		per := openT(t, newURL(t))
		for i, d := range days {
			loadFile(t, per, daySpec(d, idem.ReplacePartition, ""), files[i])
		}
		if d := diffKeys(dataFiles(first), dataFiles(snapshot(t, per.st, tableDir("orders")))); len(d) != 0 {
			t.Fatalf("one load and per-partition loads wrote different files: %v", d)
		}

		cs.reset()
		if r := loadFile(t, tg, spec, all); !r.Fast {
			t.Fatalf("identical rerun missed the fast path: %+v", r)
		}
		s := spec
		s.Force = true
		if r := loadFile(t, tg, s, all); r.Fast || r.Unchanged != 9000 || r.Inserted+r.Deleted != 0 {
			t.Fatalf("forced rerun: %+v", r)
		}
		if w := dataWrites(cs.puts); len(w) != 0 || len(cs.deletes) != 0 {
			t.Fatalf("reruns wrote %v, deleted %v", w, cs.deletes)
		}

		files[1] = dayCSV(t, 4, 3000, 5)
		cs.reset()
		r := loadFile(t, tg, spec, concatDays(t, files...))
		// The day's folder is rewritten whole; the counts are what changed.
		if r.Inserted != 1 || r.Deleted != 1 || r.Unchanged != 8999 {
			t.Fatalf("one changed row: %+v", r)
		}
		for _, k := range append(dataWrites(cs.puts), cs.deletes...) {
			if !strings.Contains(k, "order_date=2024-01-04/") {
				t.Fatalf("a one-row change in 2024-01-04 touched %s", k)
			}
		}

		// A conflicting --partition column, and partition_by on a table
		// that is not partitioned, are bad input.
		bad := daySpec(3, idem.ReplacePartition, "")
		bad.Partition.Column = "status"
		if _, err := loadErr(t, tg, bad, files[0]); !idem.IsInputError(err) {
			t.Fatalf("--partition on another column than partition_by: %v", err)
		}
		flat := openT(t, newURL(t))
		loadFile(t, flat, spec, all)
		flat.partitionBy = "order_date"
		s = spec
		s.Force = true
		if _, err := loadErr(t, flat, s, all); !idem.IsInputError(err) || !strings.Contains(err.Error(), "is not partitioned") {
			t.Fatalf("partition_by on an unpartitioned table: %v", err)
		}
	})
}

// loadErr is loadFile for loads expected to fail.
func loadErr(t *testing.T, tg idem.Target, spec idem.LoadSpec, file string) (*idem.Result, error) {
	t.Helper()
	rr, err := source.Open([]string{file}, nil, source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	spec.RunID = "bad"
	spec.Create = true
	return idem.Load(context.Background(), tg, rr, spec)
}
