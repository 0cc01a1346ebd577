package source

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/snappy"
)

type pqRec struct {
	ID     int64     `parquet:"id"`
	Day    int32     `parquet:"day,date"`
	At     time.Time `parquet:"at,timestamp(microsecond)"`
	Amount int64     `parquet:"amount,decimal(2:18)"`
	Name   *string   `parquet:"name,optional"`
	OK     bool      `parquet:"ok"`
	Ratio  float64   `parquet:"ratio"`
	Small  int32     `parquet:"small"`
}

// writePQ writes recs as Parquet with perGroup rows per row group.
func writePQ(t testing.TB, recs []pqRec, perGroup int64) []byte {
	t.Helper()
	var b bytes.Buffer
	w := parquet.NewGenericWriter[pqRec](&b, parquet.MaxRowsPerRowGroup(perGroup), parquet.Compression(&snappy.Codec{}))
	if _, err := w.Write(recs); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func str(s string) *string { return &s }

func sampleRecs(n int) []pqRec {
	base := time.Date(2024, 1, 5, 10, 0, 0, 123456000, time.UTC)
	var recs []pqRec
	for i := 0; i < n; i++ {
		r := pqRec{ID: int64(i + 1), Day: int32(19727 + i%3), At: base.Add(time.Duration(i) * time.Minute),
			Amount: int64(i*137 - 50), OK: i%2 == 0, Ratio: float64(i) / 4, Small: int32(-i)}
		switch i % 3 {
		case 0:
			r.Name = str("n, \"" + strings.Repeat("x", i%5) + "\"")
		case 1:
			r.Name = str("")
		}
		recs = append(recs, r)
	}
	return recs
}

func readPQ(t *testing.T, rr idem.RecordReader) ([][]idem.Value, []idem.Pos, error) {
	t.Helper()
	var out [][]idem.Value
	var pos []idem.Pos
	for {
		rec, p, err := rr.Read()
		if err == io.EOF {
			return out, pos, nil
		}
		if err != nil {
			return out, pos, err
		}
		out = append(out, append([]idem.Value(nil), rec...))
		pos = append(pos, p)
	}
}

func TestParquetValues(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "orders.parquet")
	if err := os.WriteFile(p, writePQ(t, sampleRecs(7), 3), 0o644); err != nil {
		t.Fatal(err)
	}
	rr, err := Open([]string{p}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	cols := strings.Join(rr.Columns(), ",")
	if cols != "id,day,at,amount,name,ok,ratio,small" {
		t.Fatalf("columns %s", cols)
	}
	recs, pos, err := readPQ(t, rr)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 7 || pos[6].Line != 7 || pos[0].File != p {
		t.Fatalf("%d records, last pos %+v", len(recs), pos[len(pos)-1])
	}
	want := [][]string{
		{"1", "2024-01-05", "2024-01-05T10:00:00.123456Z", "-0.5", `n, ""`, "true", "0", "0"},
		{"2", "2024-01-06", "2024-01-05T10:01:00.123456Z", "0.87", "", "false", "0.25", "-1"},
		{"3", "2024-01-07", "2024-01-05T10:02:00.123456Z", "2.24", "NULL", "true", "0.5", "-2"},
	}
	for i, w := range want {
		for j, s := range w {
			v := recs[i][j]
			got := v.S
			if v.Null {
				got = "NULL"
			}
			if got != s {
				t.Errorf("row %d column %s: got %q want %q", i+1, rr.Columns()[j], got, s)
			}
		}
	}
}

func TestParquetCompressedAndGlob(t *testing.T) {
	dir := t.TempDir()
	data := writePQ(t, sampleRecs(5), 2)
	var z bytes.Buffer
	zw, _ := zstd.NewWriter(&z)
	zw.Write(data)
	zw.Close()
	os.WriteFile(filepath.Join(dir, "a.parquet"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "b.parquet.zst"), z.Bytes(), 0o644)
	rr, err := Open([]string{filepath.Join(dir, "*.parquet*")}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	recs, _, err := readPQ(t, rr)
	if err != nil || len(recs) != 10 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	// Stdin needs --format; the stream is spooled.
	rr2, err := Open([]string{"-"}, bytes.NewReader(data), Options{Format: "parquet"})
	if err != nil {
		t.Fatal(err)
	}
	defer rr2.Close()
	if recs, _, err := readPQ(t, rr2); err != nil || len(recs) != 5 {
		t.Fatalf("stdin: %d records, %v", len(recs), err)
	}
}

// TestParquetCorrupt damages the second row group's pages: the error must be
// bad input naming the file and that row group, after the first group's
// rows were read.
func TestParquetCorrupt(t *testing.T) {
	data := writePQ(t, sampleRecs(400), 100)
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	md := f.Metadata()
	if len(md.RowGroups) != 4 {
		t.Fatalf("%d row groups", len(md.RowGroups))
	}
	off := md.RowGroups[1].Columns[0].MetaData.DataPageOffset
	bad := append([]byte(nil), data...)
	for i := off; i < off+12; i++ {
		bad[i] ^= 0xA5
	}
	p := filepath.Join(t.TempDir(), "bad.parquet")
	os.WriteFile(p, bad, 0o644)
	rr, err := Open([]string{p}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	recs, _, err := readPQ(t, rr)
	var ie *idem.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "bad.parquet") || !strings.Contains(err.Error(), "row group 2") {
		t.Fatalf("want an input error naming bad.parquet and row group 2, got %v", err)
	}
	if len(recs) != 100 {
		t.Fatalf("read %d rows before the corrupt group, want 100", len(recs))
	}
	// Not Parquet at all.
	p2 := filepath.Join(t.TempDir(), "text.parquet")
	os.WriteFile(p2, []byte("id,name\n1,a\n"), 0o644)
	if _, err := Open([]string{p2}, nil, Options{}); !errors.As(err, &ie) || !strings.Contains(err.Error(), "text.parquet") {
		t.Fatalf("want an input error naming text.parquet, got %v", err)
	}
}

// FuzzParquet feeds damaged files to the reader: it must never panic and
// every failure must be bad input.
func FuzzParquet(f *testing.F) {
	f.Add(writePQ(f, sampleRecs(3), 2))
	f.Add(writePQ(f, sampleRecs(1), 1))
	f.Add([]byte("PAR1PAR1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		r, err := OpenParquet("fuzz.parquet", bytes.NewReader(data), int64(len(data)), nil)
		if err != nil {
			var ie *idem.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("open: %T %v", err, err)
			}
			return
		}
		defer r.Close()
		// Declared row counts are not trusted (the rows come from the
		// pages, which are bounded); reading stops after 2^16 rows only
		// to keep each input quick.
		for n := 0; n < 1<<16; n++ {
			_, _, err := r.Read()
			if err == io.EOF {
				return
			}
			if err != nil {
				var ie *idem.InputError
				if !errors.As(err, &ie) {
					t.Fatalf("read: %T %v", err, err)
				}
				return
			}
		}
	})
}
