package idem_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/sqlite"
)

// seedTable fills a SQLite table with n deterministic rows.
func seedTable(t *testing.T, n int) (*sqlite.Target, *sql.DB) {
	t.Helper()
	ctx := context.Background()
	tg, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "d.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	db := tg.DB()
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, amount DECIMAL_TEXT, day DATE)`)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	st, err := tx.Prepare(`INSERT INTO t VALUES (?, ?, ?, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if _, err := st.Exec(i, fmt.Sprintf("name %d", i), fmt.Sprintf("%d.%02d", i%1000, i%100), fmt.Sprintf("2024-01-%02d", 1+i%28)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return tg, db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func snap(t *testing.T, tg idem.Target, o idem.SnapshotOptions) *idem.Snapshot {
	t.Helper()
	o.Dir = t.TempDir()
	s, err := idem.TakeSnapshot(context.Background(), tg, "t", nil, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestDiffFindsPlantedDifferences: on 100k rows, 7 planted differences
// (3 changed values, 2 deleted rows, 2 inserted rows) are found exactly,
// with the changed columns named.
func TestDiffFindsPlantedDifferences(t *testing.T) {
	tg, db := seedTable(t, 100_000)
	key := idem.SnapshotOptions{Key: []string{"id"}}
	before := snap(t, tg, key)
	beforeNoKey := snap(t, tg, idem.SnapshotOptions{})

	mustExec(t, db, `UPDATE t SET name = 'renamed' WHERE id = 17`)
	mustExec(t, db, `UPDATE t SET amount = '999.99' WHERE id = 50000`)
	mustExec(t, db, `UPDATE t SET day = NULL WHERE id = 99999`)
	mustExec(t, db, `DELETE FROM t WHERE id IN (3, 77777)`)
	mustExec(t, db, `INSERT INTO t VALUES (100001, 'new', '1', '2024-02-01'), (100002, '', NULL, NULL)`)

	after := snap(t, tg, key)
	d, err := idem.Compare(before, after)
	if err != nil {
		t.Fatal(err)
	}
	if d.Identical || d.Changed != 3 || d.Removed != 2 || d.Added != 2 {
		t.Fatalf("want 3 changed, 2 removed, 2 added; got %+v", d)
	}
	if got, want := d.SampleRemoved, []string{"id=3", "id=77777"}; !sameSet(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	if got, want := d.SampleAdded, []string{"id=100001", "id=100002"}; !sameSet(got, want) {
		t.Errorf("added %v, want %v", got, want)
	}
	changed := map[string][]string{}
	for _, c := range d.SampleChanged {
		for _, col := range c.Columns {
			changed[c.Key] = append(changed[c.Key], col.Column)
		}
	}
	want := map[string][]string{"id=17": {"name"}, "id=50000": {"amount"}, "id=99999": {"day"}}
	if !reflect.DeepEqual(changed, want) {
		t.Errorf("changed columns %v, want %v", changed, want)
	}
	for _, c := range d.SampleChanged {
		if c.Key == "id=99999" && (c.Columns[0].Before == nil || c.Columns[0].After != nil) {
			t.Errorf("id=99999 day should go from a date to NULL: %+v", c.Columns[0])
		}
	}
	if d.SegmentsDiffering > 7 {
		t.Errorf("%d segments differ for 7 rows", d.SegmentsDiffering)
	}

	// Without a key a changed row is one removed and one added row.
	dk, err := idem.Compare(beforeNoKey, snap(t, tg, idem.SnapshotOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if dk.Changed != 0 || dk.Removed != 5 || dk.Added != 5 {
		t.Fatalf("keyless: want 5 removed, 5 added; got %+v", dk)
	}
}

// TestDiffDuplicatesAndSwaps: a duplicated row and two swapped values are
// differences even though counts or value sets barely move.
func TestDiffDuplicatesAndSwaps(t *testing.T) {
	tg, db := seedTable(t, 1000)
	mustExec(t, db, `CREATE TABLE k (id INTEGER, name TEXT, amount DECIMAL_TEXT, day DATE)`) // no primary key: duplicates allowed
	mustExec(t, db, `INSERT INTO k SELECT * FROM t`)
	o := idem.SnapshotOptions{Key: []string{"id"}, Dir: t.TempDir()}
	ctx := context.Background()
	before, err := idem.TakeSnapshot(ctx, tg, "k", nil, o)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	mustExec(t, db, `INSERT INTO k SELECT * FROM k WHERE id = 10`)
	mustExec(t, db, `UPDATE k SET name = CASE id WHEN 20 THEN 'name 21' ELSE 'name 20' END WHERE id IN (20, 21)`)
	after, err := idem.TakeSnapshot(ctx, tg, "k", nil, o)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	d, err := idem.Compare(before, after)
	if err != nil {
		t.Fatal(err)
	}
	if d.Added != 1 || d.Changed != 2 || d.Removed != 0 || d.SampleAdded[0] != "id=10" {
		t.Fatalf("want id=10 added once and 2 changed; got %+v", d)
	}
}

// TestDiffEveryRowChanged goes through every spool group and keeps only
// the samples, with exact counts.
func TestDiffEveryRowChanged(t *testing.T) {
	tg, db := seedTable(t, 20_000)
	o := idem.SnapshotOptions{Key: []string{"id"}, Exclude: []string{"day"}}
	before := snap(t, tg, o)
	mustExec(t, db, `UPDATE t SET day = '2030-01-01'`) // excluded: no difference
	d, err := idem.Compare(before, snap(t, tg, o))
	if err != nil || !d.Identical {
		t.Fatalf("a change to an excluded column must not count: %+v %v", d, err)
	}
	mustExec(t, db, `UPDATE t SET amount = amount || '1'`)
	d, err = idem.Compare(before, snap(t, tg, o))
	if err != nil {
		t.Fatal(err)
	}
	if d.Changed != 20_000 || d.Added != 0 || d.Removed != 0 || len(d.SampleChanged) != idem.DiffSamples || d.SegmentsDiffering < 4000 {
		t.Fatalf("want all 20000 changed with %d samples; got changed=%d added=%d removed=%d samples=%d segments=%d/%d",
			idem.DiffSamples, d.Changed, d.Added, d.Removed, len(d.SampleChanged), d.SegmentsDiffering, d.Segments)
	}
}

func sameSet(a, b []string) bool {
	a, b = append([]string{}, a...), append([]string{}, b...)
	sort.Strings(a)
	sort.Strings(b)
	return reflect.DeepEqual(a, b)
}
