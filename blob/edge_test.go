package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/sqlite"
)

func writeInput(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func fingerprint(t *testing.T, tg idem.Target, table string, part *idem.Partition) string {
	t.Helper()
	fp, err := idem.FingerprintOf(context.Background(), tg, table, part)
	if err != nil {
		t.Fatalf("fingerprint of %s: %v", table, err)
	}
	return fp.Hex()
}

// TestParquetExtremeDates: dates and timestamps at both ends of the range
// a date column holds round-trip through Parquet: the file target's
// fingerprint is SQLite's, and a forced rerun changes nothing.
func TestParquetExtremeDates(t *testing.T) {
	ctx := context.Background()
	in := writeInput(t, "dates.csv", "id,day,at\n"+
		"1,0001-01-01,0001-01-01T00:00:00Z\n"+
		"2,9999-12-31,9999-12-31T23:59:59.999999Z\n"+
		"3,1677-09-21,2262-04-12T00:00:00Z\n"+
		"4,1969-12-31,1969-12-31T23:59:59.5Z\n")
	lite, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	spec := idem.LoadSpec{Table: "d", Key: []string{"id"}}
	loadFile(t, lite, spec, in)
	want := fingerprint(t, lite, "d", nil)

	tg := openT(t, "file:"+t.TempDir())
	if res := loadFile(t, tg, spec, in); res.OutputFingerprint != want {
		t.Fatalf("load reports fingerprint %s, SQLite has %s", res.OutputFingerprint, want)
	}
	if got := fingerprint(t, tg, "d", nil); got != want {
		t.Fatalf("Parquet read back as %s, SQLite has %s: %v", got, want, rowsOf(t, tg, "d"))
	}
	spec.Force = true
	if res := loadFile(t, tg, spec, in); res.Inserted+res.Updated+res.Deleted != 0 || res.Unchanged != 4 {
		t.Fatalf("forced rerun: %+v", res)
	}
	if got := fingerprint(t, tg, "d", nil); got != want {
		t.Fatalf("after the rerun: %s, want %s", got, want)
	}
}

func rowsOf(t *testing.T, tg idem.Target, table string) []string {
	t.Helper()
	var out []string
	err := tg.Scan(context.Background(), table, nil, func(s idem.Schema, r idem.Row) error {
		b, _ := json.Marshal(r)
		out = append(out, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnderscorePartitionColumn: a partition column whose name starts with
// "_" is stored, read back, checksummed and replaced like any other.
func TestUnderscorePartitionColumn(t *testing.T) {
	ctx := context.Background()
	part := &idem.Partition{Column: "_dt", Value: "2024-01-05"}
	spec := idem.LoadSpec{Table: "t", Key: []string{"id"}, Strategy: idem.ReplacePartition, Partition: part}
	v1 := writeInput(t, "v1.csv", "id,_dt,v\n1,2024-01-05,a\n2,2024-01-05,b\n")
	v2 := writeInput(t, "v2.csv", "id,_dt,v\n2,2024-01-05,B\n3,2024-01-05,c\n")

	lite, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	tg := openT(t, "file:"+t.TempDir())
	for _, in := range []string{v1, v2} {
		loadFile(t, lite, spec, in)
		res := loadFile(t, tg, spec, in)
		want := fingerprint(t, lite, "t", part)
		if res.OutputFingerprint != want {
			t.Fatalf("%s: load reports %s, SQLite has %s", filepath.Base(in), res.OutputFingerprint, want)
		}
		if got := fingerprint(t, tg, "t", part); got != want {
			t.Fatalf("%s: partition reads as %s, want %s", filepath.Base(in), got, want)
		}
		if got := fingerprint(t, tg, "t", nil); got != want {
			t.Fatalf("%s: table reads as %s, want %s", filepath.Base(in), got, want)
		}
	}
	if res := loadFile(t, tg, spec, v2); res.Inserted+res.Updated+res.Deleted != 0 {
		t.Fatalf("rerun: %+v", res)
	}
	spec.Force = true
	if res := loadFile(t, tg, spec, v2); res.Inserted+res.Updated+res.Deleted != 0 || res.Unchanged != 2 {
		t.Fatalf("forced rerun: %+v", res)
	}
}

// TestPartitionOnlyColumnRefused: files of a partition folder hold every
// column but the partition column, so a table of that column alone would
// be stored as files with no columns. It is refused as bad input with
// nothing written, in every format.
func TestPartitionOnlyColumnRefused(t *testing.T) {
	in := writeInput(t, "d.csv", "d\n2024-01-05\n2024-01-05\n")
	for _, format := range []string{FormatParquet, FormatCSV, FormatJSONL} {
		for _, how := range []string{"partition", "partition_by"} {
			dir := t.TempDir()
			spec := idem.LoadSpec{Table: "t", Strategy: idem.ReplacePartition, Partition: &idem.Partition{Column: "d", Value: "2024-01-05"}}
			url := "file:" + dir + "?format=" + format
			if how == "partition_by" {
				spec = idem.LoadSpec{Table: "t", Strategy: idem.Replace}
				url += "&partition_by=d"
			}
			_, err := loadErr(t, openT(t, url), spec, in)
			if !idem.IsInputError(err) || !strings.Contains(err.Error(), `"d"`) {
				t.Fatalf("%s %s: want bad input naming the column, got %v", format, how, err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("%s %s: a refused load wrote %s", format, how, ents[0].Name())
			}
		}
	}
}

// TestStoredFileNameInErrors: a stored file that cannot be decoded is
// named with its full path.
func TestStoredFileNameInErrors(t *testing.T) {
	dir := t.TempDir()
	tg := openT(t, "file:"+dir)
	loadFile(t, tg, idem.LoadSpec{Table: "t", Key: []string{"id"}}, writeInput(t, "a.csv", "id,v\n1,a\n"))
	m, _, err := tg.readManifest(context.Background(), "t", segment{})
	if err != nil || m == nil || len(m.Files) != 1 {
		t.Fatalf("manifest: %+v %v", m, err)
	}
	// Garbage under the manifest's own checksum: the decoder must fail.
	garbage := []byte("not parquet")
	if err := os.WriteFile(filepath.Join(dir, "t", m.Files[0].Name), garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(garbage)
	m.Files[0].SHA256 = hex.EncodeToString(sum[:])
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, "t", manifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = idem.FingerprintOf(context.Background(), tg, "t", nil)
	want := "file:" + dir + "/t/" + m.Files[0].Name
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("want an error naming %s, got %v", want, err)
	}
	if errors.Is(err, idem.ErrNoTable) {
		t.Fatal(err)
	}
}
