package source

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/idemhq/idem"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// ordersCSV builds the shape of the main load benchmark: 1M orders, about
// 69 bytes a row, a third of the notes quoted with commas and doubled
// quotes. A fixed xorshift seed keeps it identical between runs.
func ordersCSV(rows int) []byte {
	statuses := []string{"pending", "shipped", "delivered", "cancelled", "returned"}
	notes := []string{
		"",
		"",
		"call the customer before delivery please",
		"leave the parcel at the door",
		`"gift, wrap ""fragile"" items separately"`,
		`"back door, not the front one"`,
		`"size ""L"", colour blue, no substitutes"`,
		"urgent: deliver before noon",
	}
	b := make([]byte, 0, rows*70)
	b = append(b, "order_id,customer_id,amount,status,order_date,note\n"...)
	x := uint64(88172645463325252)
	for i := 0; i < rows; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b = strconv.AppendInt(b, int64(1000000+i), 10)
		b = append(b, ",C"...)
		b = strconv.AppendInt(b, int64(100000+x%900000), 10)
		b = append(b, ',')
		cents := (x >> 20) % 100000
		b = strconv.AppendInt(b, int64(cents/100), 10)
		b = append(b, '.')
		b = append(b, byte('0'+cents/10%10), byte('0'+cents%10))
		b = append(b, ',')
		b = append(b, statuses[(x>>8)%uint64(len(statuses))]...)
		b = append(b, ",2024-"...)
		m, d := 1+(x>>12)%12, 1+(x>>16)%28
		b = append(b, byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d/10), byte('0'+d%10), ',')
		b = append(b, notes[(x>>24)%uint64(len(notes))]...)
		b = append(b, '\n')
	}
	return b
}

var (
	benchOnce sync.Once
	benchData []byte
)

func orders1M() []byte {
	benchOnce.Do(func() { benchData = ordersCSV(1_000_000) })
	return benchData
}

func drain(b *testing.B, rr interface {
	Read() ([]idem.Value, idem.Pos, error)
}) int {
	n := 0
	for {
		_, _, err := rr.Read()
		if err == io.EOF {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
}

// BenchmarkCSV parses the 1M-row orders file from memory; the MB/s column
// is the parse rate.
func BenchmarkCSV(b *testing.B) {
	data := orders1M()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rr, err := Open([]string{"-"}, bytes.NewReader(data), Options{Format: "csv"})
		if err != nil {
			b.Fatal(err)
		}
		if n := drain(b, rr); n != 1_000_000 {
			b.Fatalf("read %d rows", n)
		}
		rr.Close()
	}
}

// BenchmarkCSVFile adds the file system: the same data from a real file.
func BenchmarkCSVFile(b *testing.B) {
	data := orders1M()
	path := filepath.Join(b.TempDir(), "orders.csv")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		rr, err := Open([]string{path}, nil, Options{})
		if err != nil {
			b.Fatal(err)
		}
		drain(b, rr)
		rr.Close()
	}
}

func BenchmarkJSONL(b *testing.B) {
	var buf bytes.Buffer
	for i := 0; i < 100_000; i++ {
		buf.WriteString(`{"order_id":`)
		buf.WriteString(strconv.Itoa(1000000 + i))
		buf.WriteString(`,"customer_id":"C123456","amount":12.50,"status":"shipped","order_date":"2024-01-05","note":"gift, wrap \"fragile\""}` + "\n")
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		rr, err := Open([]string{"-"}, bytes.NewReader(data), Options{Format: "jsonl"})
		if err != nil {
			b.Fatal(err)
		}
		drain(b, rr)
		rr.Close()
	}
}

func TestBenchDataShape(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 69 MB")
	}
	data := orders1M()
	// The benchmark stands for the 69 MB orders load; keep it that size.
	if len(data) < 66e6 || len(data) > 72e6 {
		t.Fatalf("benchmark data is %d bytes, want about 69 MB", len(data))
	}
	res, err := openAll([]string{"-"}, bytes.NewReader(data[:bytes.IndexByte(data[1000:], '\n')+1001]), Options{Format: "csv"})
	if err != nil || len(res.cols) != 6 || len(res.rows) == 0 {
		t.Fatalf("benchmark data does not parse: %v", err)
	}
}

// BenchmarkCSVCompressed measures decompression plus parsing; MB/s are of
// uncompressed CSV.
func BenchmarkCSVCompressed(b *testing.B) {
	data := orders1M()
	dir := b.TempDir()
	for _, ext := range []string{"gz", "zst"} {
		path := filepath.Join(dir, "orders.csv."+ext)
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		var w io.WriteCloser
		if ext == "gz" {
			w = gzip.NewWriter(f)
		} else {
			w, _ = zstd.NewWriter(f)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		b.Run(ext, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				rr, err := Open([]string{path}, nil, Options{})
				if err != nil {
					b.Fatal(err)
				}
				drain(b, rr)
				rr.Close()
			}
		})
	}
}
