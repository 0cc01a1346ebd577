// Command storelat measures a key store alone, without the proxy: at a
// fixed rate, each tick claims a new key and completes it, as `idem
// serve` does for a unique-key request, and the latency of the claim, the
// completion and both together is measured from the tick's scheduled
// time (open loop: a store that falls behind shows as latency). Prints
// one JSON object.
//
//	go run ./bench/storelat -store sqlite:/tmp/k.db -rate 2000 -duration 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/bench/internal/openloop"
	"github.com/idemhq/idem/internal/keystores"
	"github.com/jackc/pgx/v5/pgxpool"
)

func main() {
	store := flag.String("store", "memory:", "key store URL: memory:, sqlite:PATH, redis://…, postgres://…")
	rate := flag.Int("rate", 2000, "claims (each followed by its completion) per second")
	dur := flag.Duration("duration", 10*time.Second, "how long to run")
	label := flag.String("label", "", "label copied into the output")
	commit := flag.Bool("commit", false, "with a postgres:// store: time one single-row INSERT, committed on its own, per tick instead (the reference for the store's two commits)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "storelat:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	if *commit {
		if err := commits(ctx, *store, *rate, *dur, *label); err != nil {
			fmt.Fprintln(os.Stderr, "storelat:", err)
			os.Exit(1)
		}
		return
	}
	s, err := keystores.Open(ctx, *store)
	if err != nil {
		fmt.Fprintln(os.Stderr, "storelat:", err)
		os.Exit(1)
	}
	defer s.Close()
	n := int(dur.Seconds() * float64(*rate))
	claim, complete, total := make([]time.Duration, n), make([]time.Duration, n), make([]time.Duration, n)
	errs := 0
	var mu sync.Mutex
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	payload := []byte(`{"status":201,"header":{"Content-Type":["application/json"]},"body":"eyJpZCI6ImNoXzEiLCJzdGF0dXMiOiJzdWNjZWVkZWQifQ=="}`)
	openloop.Run(n, *rate, func(i int, due time.Time, _ time.Duration) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		key := fmt.Sprintf("%s-%d", run, i)
		r, err := s.Claim(cctx, idem.ClaimRequest{Scope: "POST /charge x", Key: key, Fingerprint: "f", Lease: 30 * time.Second, TTL: time.Hour, Takeover: true})
		t1 := time.Now()
		if err == nil {
			err = s.Complete(cctx, "POST /charge x", key, r.Token, payload, time.Hour)
		}
		t2 := time.Now()
		if err != nil {
			mu.Lock()
			errs++
			mu.Unlock()
		}
		claim[i], complete[i], total[i] = t1.Sub(due), t2.Sub(t1), t2.Sub(due)
	})
	out := map[string]any{"label": *label, "store": idem.RedactURL(*store), "rate": *rate, "errors": errs,
		"claim": summary(claim), "complete": summary(complete), "total": summary(total)}
	json.NewEncoder(os.Stdout).Encode(out)
}

func summary(d []time.Duration) map[string]float64 {
	d = slices.Clone(d)
	slices.Sort(d)
	q := func(p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
	}
	return map[string]float64{"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": q(1)}
}

// commits measures what one durable commit costs this client at the given
// rate: each tick inserts its own row in a statement of its own, and the
// time from sending it to its acknowledgement is taken (not from the tick,
// so the pacer's own lateness is left out). A claim and a completion are
// at least one such commit each.
func commits(ctx context.Context, url string, rate int, dur time.Duration, label string) error {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	const table = "idem_bench_commit"
	if _, err := pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (k text PRIMARY KEY)"); err != nil {
		return err
	}
	defer pool.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+table)
	n := int(dur.Seconds() * float64(rate))
	lat := make([]time.Duration, n)
	var errs atomic.Int64
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	openloop.Run(n, rate, func(i int, _ time.Time, _ time.Duration) {
		t0 := time.Now()
		if _, err := pool.Exec(ctx, "INSERT INTO "+table+" VALUES ($1)", fmt.Sprintf("%s-%d", run, i)); err != nil {
			errs.Add(1)
		}
		lat[i] = time.Since(t0)
	})
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"label": label, "store": idem.RedactURL(url), "rate": rate,
		"errors": errs.Load(), "commit": summary(lat)})
}
