package postgres_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/postgres"
	"github.com/idemhq/idem/source"
	"github.com/idemhq/idem/sqlite"
)

// TestFingerprintAcrossBackends loads one CSV into SQLite and into
// PostgreSQL: the fingerprints, as reported by the load and as read back,
// must be equal, for every type idem creates.
func TestFingerprintAcrossBackends(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	dir := t.TempDir()
	csv := "id,amount,ok,day,at,note,big\n" +
		"1,1.50,true,2024-01-05,2024-01-05T10:00:00Z,\"comma, \"\"quote\"\"\",12345678901234567890.123\n" +
		"2,-0.10,f,2024-02-29,2024-01-05 12:30:00.5+02:00,\"\",1\n" +
		"3,,,,,,\n" +
		"4,100,false,1999-12-31,2000-01-01T00:00:00.000001Z,ünïcödé,-7\n"
	path := filepath.Join(dir, "all.csv")
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	lite, pg := bothTargets(t, dir, url)
	var reported, read []string
	for _, tg := range []idem.Target{lite, pg} {
		rr, err := source.Open([]string{path}, nil, source.Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := idem.Load(ctx, tg, rr, idem.LoadSpec{Table: "all_types", Key: []string{"id"}, Create: true, RunID: "r1"})
		rr.Close()
		if err != nil {
			t.Fatal(err)
		}
		fp, err := idem.FingerprintOf(ctx, tg, "all_types", nil)
		if err != nil {
			t.Fatal(err)
		}
		reported = append(reported, res.OutputFingerprint)
		read = append(read, fp.Hex())
	}
	if reported[0] != reported[1] || read[0] != read[1] || reported[0] != read[0] {
		t.Fatalf("fingerprints differ: reported sqlite=%s postgres=%s; read back sqlite=%s postgres=%s", reported[0], reported[1], read[0], read[1])
	}
	// And the fingerprint really is about content: change one value in
	// PostgreSQL only and they must differ.
	if _, err := pg.Pool().Exec(ctx, `UPDATE all_types SET note = note || '!' WHERE id = 4`); err != nil {
		t.Fatal(err)
	}
	fp, _ := idem.FingerprintOf(ctx, pg, "all_types", nil)
	if fp.Hex() == read[0] {
		t.Fatal("changing a value did not change the fingerprint")
	}
}

// TestChecksumSeesEveryKindOfEdit: the same CSV loaded into SQLite and
// PostgreSQL checksums equal; then one changed value, one extra duplicate
// row and one swapped pair of values each change the PostgreSQL checksum,
// and undoing the edit restores it. The table has no key, so a duplicate
// is possible, as it is in the pipelines this guards.
func TestChecksumSeesEveryKindOfEdit(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "e.csv")
	csv := "id,name,amount\n1,ann,1.50\n2,bob,2.00\n3,cy,3\n3,cy,3\n"
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	lite, pg := bothTargets(t, dir, url)
	var fps []idem.Fingerprint
	for _, tg := range []idem.Target{lite, pg} {
		rr, err := source.Open([]string{path}, nil, source.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = idem.Load(ctx, tg, rr, idem.LoadSpec{Table: "e", Strategy: idem.Replace, Create: true, RunID: "r"})
		rr.Close()
		if err != nil {
			t.Fatal(err)
		}
		fp, err := idem.Checksum(ctx, tg, "e", nil)
		if err != nil {
			t.Fatal(err)
		}
		fps = append(fps, fp)
	}
	if fps[0] != fps[1] || fps[0].Rows != 4 {
		t.Fatalf("sqlite %v != postgres %v", fps[0], fps[1])
	}
	orig := fps[1]
	for _, edit := range []struct{ name, do, undo string }{
		{"changed value", `UPDATE e SET amount = 1.51 WHERE id = 1`, `UPDATE e SET amount = 1.50 WHERE id = 1`},
		{"extra duplicate", `INSERT INTO e VALUES (2, 'bob', 2.00)`, `DELETE FROM e WHERE ctid = (SELECT max(ctid) FROM e WHERE id = 2)`},
		{"lost duplicate", `DELETE FROM e WHERE ctid = (SELECT max(ctid) FROM e WHERE id = 3)`, `INSERT INTO e VALUES (3, 'cy', 3)`},
		{"swapped pair", `UPDATE e SET name = CASE id WHEN 1 THEN 'bob' ELSE 'ann' END WHERE id IN (1, 2)`,
			`UPDATE e SET name = CASE id WHEN 1 THEN 'ann' ELSE 'bob' END WHERE id IN (1, 2)`},
		{"same value, other scale", `UPDATE e SET amount = 1.5000 WHERE id = 1`, ``},
	} {
		if _, err := pg.Pool().Exec(ctx, edit.do); err != nil {
			t.Fatal(err)
		}
		fp, err := idem.Checksum(ctx, pg, "e", nil)
		if err != nil {
			t.Fatal(err)
		}
		if edit.undo == "" {
			// 1.5000 and 1.50 are the same number: no change.
			if fp != orig {
				t.Errorf("%s: fingerprint moved", edit.name)
			}
			continue
		}
		if fp == orig {
			t.Errorf("%s: fingerprint did not change", edit.name)
		}
		if _, err := pg.Pool().Exec(ctx, edit.undo); err != nil {
			t.Fatal(err)
		}
		if fp, _ := idem.Checksum(ctx, pg, "e", nil); fp != orig {
			t.Errorf("%s: undoing it did not restore the fingerprint", edit.name)
		}
	}
}

// TestScanEscapesAndPartitionLiteral: values with every character COPY's
// text format escapes read back exactly (same fingerprint as SQLite), and
// a text partition value with quotes and backslashes selects its rows and
// nothing else (it is inlined as a literal, COPY takes no parameters).
func TestScanEscapesAndPartitionLiteral(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	dir := t.TempDir()
	lite, pg := bothTargets(t, dir, url)
	hostile := `it's \ a "tab"` + "\there\nnew\rline\b\f\v" + `\N`
	rows := [][]string{{"1", hostile, "x"}, {"2", `\N`, `o'k\`}, {"3", "", `o'k\`}, {"4", `\\`, `o'k`}}
	for _, tg := range []idem.Target{lite, pg} {
		rr := &sliceReader{cols: []string{"id", "v", "grp"}, rows: rows}
		if _, err := idem.Load(ctx, tg, rr, idem.LoadSpec{Table: "h", Key: []string{"id"}, Create: true, RunID: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, part := range []*idem.Partition{nil, {Column: "grp", Value: `o'k\`}, {Column: "grp", Value: `o'k`}} {
		a, err := idem.Checksum(ctx, lite, "h", part)
		if err != nil {
			t.Fatal(err)
		}
		b, err := idem.Checksum(ctx, pg, "h", part)
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("partition %v: sqlite %v, postgres %v", part, a, b)
		}
	}
	var got []string
	err := pg.Scan(ctx, "h", &idem.Partition{Column: "grp", Value: `o'k\`}, func(_ idem.Schema, r idem.Row) error {
		got = append(got, r[0].S)
		return nil
	})
	if err != nil || len(got) != 2 {
		t.Fatalf("partition o'k\\ read %v, %v; want ids 2 and 3", got, err)
	}
	err = pg.Scan(ctx, "h", &idem.Partition{Column: "id", Value: "1"}, func(_ idem.Schema, r idem.Row) error {
		if r[1].S != hostile {
			t.Errorf("hostile value read back as %q", r[1].S)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// bothTargets opens a SQLite file in dir and the PostgreSQL schema at url,
// closed when the test ends: the two sides of every cross-backend check.
func bothTargets(t *testing.T, dir, url string) (*sqlite.Target, *postgres.Target) {
	t.Helper()
	ctx := context.Background()
	lite, err := sqlite.Open(ctx, filepath.Join(dir, "lite.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lite.Close() })
	pg, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	return lite, pg
}

// sliceReader is an idem.RecordReader over literal rows.
type sliceReader struct {
	cols []string
	rows [][]string
	i    int
}

func (s *sliceReader) Columns() []string { return s.cols }
func (s *sliceReader) Read() ([]idem.Value, idem.Pos, error) {
	if s.i == len(s.rows) {
		return nil, idem.Pos{}, io.EOF
	}
	r := s.rows[s.i]
	s.i++
	out := make([]idem.Value, len(r))
	for j, v := range r {
		out[j] = idem.V(v)
	}
	return out, idem.Pos{File: "test", Line: int64(s.i)}, nil
}
func (s *sliceReader) Close() error { return nil }
