// Command genorders writes a deterministic orders CSV: the shipped example
// and the benchmark data come from it, so no data set is committed beyond
// the small example.
//
//	genorders -rows 1000000 -days 30 > orders.csv
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

func main() {
	rows := flag.Int("rows", 1000, "number of rows")
	days := flag.Int("days", 30, "number of distinct order dates")
	start := flag.String("start", "2024-01-01", "first order date")
	seed := flag.Uint64("seed", 1, "random seed; the same seed gives the same bytes")
	changed := flag.Float64("change", 0, "fraction of rows whose amount and status differ from seed 1's (for rerun benchmarks)")
	flag.Parse()
	t0, err := time.Parse("2006-01-02", *start)
	if err != nil {
		fmt.Fprintln(os.Stderr, "genorders: -start:", err)
		os.Exit(2)
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer w.Flush()
	r := rand.New(rand.NewPCG(*seed, 42))
	alt := rand.New(rand.NewPCG(*seed+1000, 7))
	statuses := []string{"new", "paid", "shipped", "delivered", "returned"}
	fmt.Fprintln(w, "order_id,customer_id,amount,status,order_date,note")
	for i := 1; i <= *rows; i++ {
		cust := 1 + r.IntN(50000)
		cents := 100 + r.IntN(99900)
		status := statuses[r.IntN(len(statuses))]
		day := t0.AddDate(0, 0, (i-1)*(*days) / *rows)
		note := fmt.Sprintf("\"gift wrap, \"\"fragile\"\" #%d\"", r.IntN(1000))
		if r.IntN(4) == 0 {
			note = "plain"
		}
		if *changed > 0 && alt.Float64() < *changed {
			cents += 1
			status = "changed"
		}
		fmt.Fprintf(w, "%d,%d,%d.%02d,%s,%s,%s\n", i, cust, cents/100, cents%100, status, day.Format("2006-01-02"), note)
	}
}
