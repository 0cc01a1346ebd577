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

// crashBeforeCleanup is a store on which a load gets as far as a load that
// is killed after its ledger entry and before its deletes: every delete of
// a data file is lost.
type crashBeforeCleanup struct{ Store }

func (crashBeforeCleanup) Delete(context.Context, string) error {
	return errors.New("process killed before the cleanup")
}

// TestRerunAfterCrashBeforeCleanup: a load that dies between recording its
// run and deleting the replaced files leaves files its manifest does not
// list. An identical rerun must not take the fast path over them: it must
// leave exactly a clean load's files. Leftovers a load did not make (a
// stray data file and a temporary file in a folder the rerun does not
// change) are removed the same way. Once the folder is clean, an identical
// rerun uploads and deletes nothing.
func TestRerunAfterCrashBeforeCleanup(t *testing.T) {
	backends(t, func(t *testing.T, newURL func(t *testing.T) string) {
		ctx := context.Background()
		ins := []string{dayCSV(t, 11, 3000, 0), dayCSV(t, 11, 3000, -3)}
		spec := daySpec(11, idem.ReplacePartition, "")
		seg := tableDir("orders") + segDir("order_date", idem.V("2024-01-11"))
		withRows := func(u string) string { return withParam(u, "rows_per_file", "1000") }

		ref := openT(t, withRows(newURL(t)))
		loadFile(t, ref, spec, ins[1])
		clean := dataFiles(snapshot(t, ref.st, seg))
		if len(clean) != 3 {
			t.Fatalf("want a clean partition of 3 files, have %d", len(clean))
		}

		tg := openT(t, withRows(newURL(t)))
		st := tg.st
		loadFile(t, tg, spec, ins[0])
		tg.st = crashBeforeCleanup{st}
		loadFile(t, tg, spec, ins[1])
		cs := &countingStore{Store: st}
		tg.st = cs
		left := dataFiles(snapshot(t, st, seg))
		if len(left) != 6 || len(diffKeys(clean, left)) != 3 {
			t.Fatalf("the crash left %d files (%d not a clean load's), want 6 (3)", len(left), len(diffKeys(clean, left)))
		}
		last, err := tg.LastRun(ctx, "orders", spec.Partition.String())
		if err != nil || last == nil {
			t.Fatalf("last run: %v %v", last, err)
		}
		if tok, err := tg.StateToken(ctx, "orders", spec.Partition); err != nil || tok == last.StateToken {
			t.Fatalf("state token %q with leftovers still matches the recorded one %q (%v)", tok, last.StateToken, err)
		}

		check := func(what string, wantFast bool) {
			t.Helper()
			cs.reset()
			res := loadFile(t, tg, spec, ins[1])
			if res.Fast != wantFast {
				t.Fatalf("%s: fast path %v, want %v", what, res.Fast, wantFast)
			}
			if d := diffKeys(clean, dataFiles(snapshot(t, st, seg))); len(d) != 0 {
				t.Fatalf("%s: files differ from a clean load's: %v", what, d)
			}
			f, err := idem.FingerprintOf(ctx, tg, "orders", spec.Partition)
			if err != nil {
				t.Fatal(err)
			}
			g, err := idem.FingerprintOf(ctx, ref, "orders", spec.Partition)
			if err != nil || f != g {
				t.Fatalf("%s: fingerprint %s, a clean load's %s (%v)", what, f.Hex(), g.Hex(), err)
			}
			for _, k := range dataWrites(cs.puts) {
				if strings.Contains(k, dataPrefix) {
					t.Fatalf("%s: uploaded %s, which was already there", what, k)
				}
			}
		}
		check("rerun after the crash", false)
		check("identical rerun of the clean folder", true)
		if w := dataWrites(cs.puts); len(w) != 0 || len(cs.deletes) != 0 {
			t.Fatalf("identical rerun of a clean folder wrote %v and deleted %v", w, cs.deletes)
		}

		// Leftovers of someone else: a stray data file and a temporary file.
		var name string
		for k := range clean {
			name = k[strings.LastIndex(k, "/")+1:]
			break
		}
		b, err := st.Get(ctx, seg+name)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{seg + dataPrefix + "99999-0123456789abcdef.parquet", seg + tmpPrefix + "0123-" + name} {
			if _, err := st.Put(ctx, k, b); err != nil {
				t.Fatal(err)
			}
		}
		check("rerun over stray files", false)
		if w := dataWrites(cs.puts); len(w) != 0 {
			t.Fatalf("rerun over stray files of an unchanged folder wrote %v", w)
		}
		if len(cs.deletes) != 2 {
			t.Fatalf("rerun over stray files deleted %v, want the 2 strays", cs.deletes)
		}
		check("identical rerun after the strays went", true)
	})
}
