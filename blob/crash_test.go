package blob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
)

// TestCrashDuringPartitionOverwrite kills real loads (SIGKILL) at random
// moments while they overwrite one partition of several files, with a
// reader following the manifest running the whole time. Every state that
// reader sees, and the state after each kill, must be the old partition
// or the new one, never a mix; the rerun must leave exactly the files a
// clean load leaves (no leftovers, same bytes).
func TestCrashDuringPartitionOverwrite(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test is long; run without -short")
	}
	backends(t, func(t *testing.T, newURL func(t *testing.T) string) {
		const rows = 60000
		// Every row differs between the two inputs, so any mix of their
		// files is visible.
		ins := []string{dayCSV(t, 11, rows, 0), dayCSV(t, 11, rows, -3)}
		part := &idem.Partition{Column: "order_date", Value: "2024-01-11"}
		seg := tableDir("orders") + segDir("order_date", idem.V("2024-01-11"))
		withRows := func(u string) string { return withParam(u, "rows_per_file", "8000") }
		args := func(url, in string) []string {
			return []string{"load", in, "--to", url, "--table", "orders", "--partition", "order_date=2024-01-11"}
		}
		ctx := context.Background()
		conformance.Binary(t) // built before anything is timed

		// Clean end states and their data files, from a separate target.
		refURL := withRows(newURL(t))
		ref := openT(t, refURL)
		var want [2]idem.Fingerprint
		var clean [2]map[string]string
		var took time.Duration
		for i, in := range ins {
			start := time.Now()
			if r := conformance.RunCLI(t, args(refURL, in)...); r.Code != 0 {
				t.Fatalf("clean load: %s", r.Stderr)
			}
			took = max(took, time.Since(start))
			f, err := idem.FingerprintOf(ctx, ref, "orders", part)
			if err != nil {
				t.Fatal(err)
			}
			want[i], clean[i] = f, dataFiles(snapshot(t, ref.st, seg))
		}
		if len(clean[0]) < 7 {
			t.Fatalf("want a partition of several files, have %d", len(clean[0]))
		}

		url := withRows(newURL(t))
		tg := openT(t, url)
		if r := conformance.RunCLI(t, args(url, ins[0])...); r.Code != 0 {
			t.Fatal(r.Stderr)
		}
		cur, next := want[0], 1
		seed := uint64(time.Now().UnixNano())
		rng := rand.New(rand.NewPCG(seed, 2))
		t.Logf("crash seed %d, clean load %v", seed, took)
		kills, reads := 0, 0
		for i := 0; i < 12; i++ {
			at := time.Duration(rng.Int64N(int64(took) * 9 / 10))
			cmd := exec.Command(conformance.Binary(t), args(url, ins[next])...)
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()

			// The manifest-following reader, until the load ends.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var bad error
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					f, err := idem.FingerprintOf(ctx, tg, "orders", part)
					if err != nil && !errors.Is(err, ErrNotFound) {
						bad = err
						return
					}
					if err == nil {
						reads++
						if f != cur && f != want[next] {
							bad = errors.New("reader saw a partition that is neither the old nor the new one")
							return
						}
					}
				}
			}()
			// Every other kill waits for the overwrite itself to begin
			// (a file of the new version appears in the folder) and lands
			// a random moment into it: a purely random moment mostly
			// falls in reading and encoding, which touch nothing.
			fire := time.After(at)
			if i%2 == 1 {
				fire = afterNewFile(ctx, tg.st, seg, time.Duration(rng.Int64N(int64(40*time.Millisecond))))
			}
			finished := false
			select {
			case err := <-done:
				finished = true
				if err != nil {
					close(stop)
					wg.Wait()
					t.Fatalf("load failed before the kill: %v %s", err, errb.String())
				}
			case <-fire:
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-done
				kills++
			}
			close(stop)
			wg.Wait()
			if bad != nil {
				t.Fatalf("kill %d at %v: %v", i, at, bad)
			}
			have, err := idem.FingerprintOf(ctx, tg, "orders", part)
			if err != nil {
				t.Fatal(err)
			}
			if have != cur && have != want[next] || finished && have != want[next] {
				t.Fatalf("kill %d at %v: partition is a mix (rows %d)", i, at, have.Rows)
			}
			start := time.Now()
			if r := conformance.RunCLI(t, args(url, ins[next])...); r.Code != 0 {
				t.Fatalf("rerun after kill %d: %d %s", i, r.Code, r.Stderr)
			}
			if d := time.Since(start); !finished {
				took = d // the best estimate of the next load's length
			}
			if have, _ := idem.FingerprintOf(ctx, tg, "orders", part); have != want[next] {
				t.Fatalf("rerun after kill %d did not reach the clean state", i)
			}
			if d := diffKeys(clean[next], dataFiles(snapshot(t, tg.st, seg))); len(d) != 0 {
				t.Fatalf("rerun after kill %d: files differ from a clean load's: %v", i, d)
			}
			cur, next = want[next], 1-next
		}
		t.Logf("%d kills, %d reads by the manifest-following reader", kills, reads)
		if kills < 10 {
			t.Fatalf("only %d of 12 loads were killed mid-run", kills)
		}
	})
}

// afterNewFile fires delay after an object that the folder's manifest does
// not list shows up in it (the load has started writing).
func afterNewFile(ctx context.Context, st Store, seg string, delay time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		b, err := st.Get(ctx, seg+manifestName)
		listed := map[string]bool{}
		if err == nil {
			var m manifest
			if json.Unmarshal(b, &m) == nil {
				for _, f := range m.Files {
					listed[f.Name] = true
				}
			}
		}
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			objs, _, _ := st.List(ctx, seg)
			for _, o := range objs {
				if (strings.HasPrefix(o.Name, dataPrefix) || strings.HasPrefix(o.Name, tmpPrefix)) && !listed[o.Name] {
					time.Sleep(delay)
					ch <- time.Now()
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return ch
}
