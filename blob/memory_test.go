package blob

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem"
)

// manyDaysCSV is rows orders spread over days order dates, day by day
// interleaved (row i is on day i%days), so that no partition's rows are
// together in the input.
func manyDaysCSV(t *testing.T, rows, days int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("order_id,customer_id,amount,status,order_date\n")
	start := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < rows; i++ {
		fmt.Fprintf(&b, "%d,%d,%d.%02d,%s,%s\n", i, i%5000, i%100000, i%100,
			[]string{"new", "paid", "shipped"}[i%3], start.AddDate(0, 0, i%days).Format("2006-01-02"))
	}
	p := filepath.Join(t.TempDir(), fmt.Sprintf("orders-%d-%d.csv", rows, days))
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSpillKeepsOutput: a keyless load of many partitions writes the same
// files whether its input stays in memory or goes through the temporary
// file in many small chunks (rows must come back in input order), and the
// same files as one load per partition.
func TestSpillKeepsOutput(t *testing.T) {
	in := manyDaysCSV(t, 20000, 40)
	spec := idem.LoadSpec{Table: "orders", Strategy: idem.Replace}
	var snaps []map[string]string
	for _, lim := range []int{spillBuffer, 1 << 10, 1} {
		tg := openT(t, "file:"+t.TempDir()+"?partition_by=order_date&rows_per_file=100")
		tg.spillLimit = lim
		if r := loadFile(t, tg, spec, in); r.Inserted != 20000 {
			t.Fatalf("spill limit %d: %+v", lim, r)
		}
		f, err := idem.FingerprintOf(context.Background(), tg, "orders", nil)
		if err != nil || f.Rows != 20000 {
			t.Fatalf("spill limit %d: fingerprint %v %v", lim, f, err)
		}
		snaps = append(snaps, dataFiles(snapshot(t, tg.st, tableDir("orders"))))
	}
	if len(snaps[0]) < 200 {
		t.Fatalf("want many files, have %d", len(snaps[0]))
	}
	for i := 1; i < len(snaps); i++ {
		if d := diffKeys(snaps[0], snaps[i]); len(d) != 0 {
			t.Fatalf("spilled load %d wrote different files: %v", i, d[:min(5, len(d))])
		}
	}
}

// TestOneLoadMemoryIsBoundedByPartition: a one-process load of many
// partitions holds one partition's rows at a time, not the input. Holding
// the input's 400,000 rows as rows takes several hundred MB of heap; one
// partition of 2,000 rows, a few MB. The bound leaves room for the spill
// buffer, the largest partition and the garbage collector's slack.
func TestOneLoadMemoryIsBoundedByPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("memory test loads 400,000 rows; run without -short")
	}
	const rows, days = 400000, 200
	in := manyDaysCSV(t, rows, days)
	tg := openT(t, "file:"+t.TempDir()+"?partition_by=order_date")
	spec := idem.LoadSpec{Table: "orders", Strategy: idem.Replace}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	r := loadFile(t, tg, spec, in)
	close(stop)
	wg.Wait()
	if r.Inserted != rows {
		t.Fatalf("load: %+v", r)
	}
	grew := (peak - min(peak, base)) >> 20
	t.Logf("heap in use grew by %d MB during the load of %d rows in %d partitions", grew, rows, days)
	if grew > 96 {
		t.Fatalf("heap in use grew by %d MB: the load holds more than one partition", grew)
	}
}
