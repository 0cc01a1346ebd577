package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
)

// TestBackfillMachinesSplitDates: three backfills of the same range run
// at once against one ledger, as on three machines: every date runs
// exactly once in all, each process reports every date (ran by it, or
// skipped as done by another), and all exit 0; on every key store.
func TestBackfillMachinesSplitDates(t *testing.T) {
	for name, store := range keyStoreURLs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"backfill", "--from", "2024-01-01", "--to", "2024-01-31", "--parallel", "3", "--ledger", store,
				"--poll", "50ms", "--json", "--", "sh", "-c", "echo {{.ExecutionDate}} >> " + out + "; sleep 0.05"}
			var wg sync.WaitGroup
			results := make([]conformance.CLIResult, 3)
			for i := range results {
				wg.Go(func() { results[i] = conformance.RunCLI(t, args...) })
			}
			wg.Wait()
			ran := 0
			for i, r := range results {
				if r.Code != 0 {
					t.Fatalf("backfill %d: exit %d: %s", i, r.Code, r.Stderr)
				}
				seen := map[string]bool{}
				for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
					var res idem.BackfillResult
					if err := json.Unmarshal([]byte(line), &res); err != nil {
						t.Fatalf("backfill %d: %q: %v", i, line, err)
					}
					seen[res.Date] = true
					if res.Status == idem.BackfillRan {
						ran++
					}
				}
				if len(seen) != 30 {
					t.Fatalf("backfill %d reported %d dates, want 30", i, len(seen))
				}
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			dates := strings.Fields(string(b))
			sort.Strings(dates)
			for i, d := range dates {
				if want := fmt.Sprintf("2024-01-%02d", i+1); d != want {
					t.Fatalf("runs in all: %v; want each of the 30 dates once", dates)
				}
			}
			if len(dates) != 30 || ran != 30 {
				t.Fatalf("%d runs, %d reported as ran; want 30", len(dates), ran)
			}
		})
	}
}

// TestBackfillCrashResumes: a backfill of real loads (one partition per
// date) killed with SIGKILL at a random moment leaves no partial
// partition, and running it again ends with the same table, by content
// fingerprint, as one uninterrupted backfill.
func TestBackfillCrashResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("SIGKILL test skipped with -short")
	}
	bin := conformance.Binary(t)
	dir := t.TempDir()
	const days = 12
	for d := 1; d <= days; d++ {
		var b strings.Builder
		b.WriteString("id,order_date,amount\n")
		for i := range 2000 {
			fmt.Fprintf(&b, "%d,2024-01-%02d,%d.%02d\n", d*10000+i, d, (d*i)%997, i%100)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("orders_2024-01-%02d.csv", d)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	backfill := func(db, ledger string) *exec.Cmd {
		return exec.Command(bin, "backfill", "--from", "2024-01-01", "--to", fmt.Sprintf("2024-01-%02d", days+1), "--parallel", "3",
			"--ledger", "sqlite:"+ledger, "--lease", "1s", "--poll", "100ms", "--",
			"idem", "load", filepath.Join(dir, "orders_{{.ExecutionDate}}.csv"), "--to", "sqlite:"+db, "--table", "orders",
			"--key", "id", "--partition", "order_date={{.ExecutionDate}}", "--execution-date", "{{.ExecutionDate}}")
	}
	checksum := func(db string) string {
		r := conformance.RunCLI(t, "checksum", "--to", "sqlite:"+db, "--table", "orders")
		if r.Code != 0 {
			t.Fatalf("checksum %s: exit %d: %s", db, r.Code, r.Stderr)
		}
		return r.Stdout
	}
	ref := filepath.Join(dir, "ref.db")
	start := time.Now()
	if out, err := backfill(ref, filepath.Join(dir, "ref-ledger.db")).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted backfill: %v\n%s", err, out)
	}
	took := time.Since(start)
	want := checksum(ref)
	if !strings.Contains(want, fmt.Sprintf("rows=%d ", days*2000)) {
		t.Fatalf("reference: %s", want)
	}
	for round := range 2 {
		db, ledger := filepath.Join(dir, fmt.Sprint("dw", round, ".db")), filepath.Join(dir, fmt.Sprint("ledger", round, ".db"))
		cmd := backfill(db, ledger)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Somewhere in the middle: a whole run takes about as long.
		time.Sleep(took/10 + rand.N(took*7/10))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		// Whatever the kill left, every partition holds all its rows or none.
		if _, err := os.Stat(db); err == nil {
			r := conformance.RunCLI(t, "runs", "--to", "sqlite:"+db, "--table", "orders", "--json")
			for d := 1; d <= days; d++ {
				c := conformance.RunCLI(t, "checksum", "--to", "sqlite:"+db, "--table", "orders", "--partition", fmt.Sprintf("order_date=2024-01-%02d", d))
				if c.Code == 0 && !strings.HasPrefix(c.Stdout, "rows=0 ") && !strings.HasPrefix(c.Stdout, "rows=2000 ") {
					t.Fatalf("round %d: partition %d after the kill: %s (runs: %s)", round, d, c.Stdout, r.Stdout)
				}
			}
		}
		t.Logf("round %d: killed after %d of %d dates", round, strings.Count(out.String(), " ran "), days)
		again := backfill(db, ledger)
		if b, err := again.CombinedOutput(); err != nil {
			t.Fatalf("round %d: rerun after the kill: %v\n%s\nkilled run's output:\n%s", round, err, b, out.String())
		}
		if got := checksum(db); got != want {
			t.Fatalf("round %d: after kill and rerun %s, want %s", round, got, want)
		}
	}
}

// TestBackfillInputChanged: a date is skipped only when done with the same
// input: after one date's file changes, a rerun runs that date alone.
func TestBackfillInputChanged(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	for d := 1; d <= 3; d++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("in_2024-01-%02d.csv", d)), []byte("id\n1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"backfill", "--from", "2024-01-01", "--to", "2024-01-04", "--ledger", "sqlite:" + filepath.Join(dir, "l.db"), "--",
		"sh", "-c", `echo "$1" >> ` + log, "sh", filepath.Join(dir, "in_{{.ExecutionDate}}.csv")}
	for round, want := range []int{3, 3, 4} {
		if round == 2 {
			if err := os.WriteFile(filepath.Join(dir, "in_2024-01-02.csv"), []byte("id\n1\n2\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if r := conformance.RunCLI(t, args...); r.Code != 0 {
			t.Fatalf("round %d: exit %d: %s", round, r.Code, r.Stderr)
		}
		if n := lines(t, log); n != want {
			b, _ := os.ReadFile(log)
			t.Fatalf("round %d: %d runs in all, want %d:\n%s", round, n, want, b)
		}
	}
	b, _ := os.ReadFile(log)
	if !strings.HasSuffix(string(b), "in_2024-01-02.csv\n") {
		t.Fatalf("the rerun after the change ran another date:\n%s", b)
	}
}

// TestBackfillSubSecondStep: execution dates keep their fraction of a
// second, so three half-second steps are three dates, not two.
func TestBackfillSubSecondStep(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runIn(t, dir, "", "backfill", "--from", "2024-03-01T00:00:00.5Z", "--to", "2024-03-01T00:00:02Z", "--step", "500ms",
		"--ledger", "sqlite:"+filepath.Join(dir, "l.db"), "--json", "--", "echo", "{{.DataIntervalStart}}")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var dates []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r idem.BackfillResult
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Status != idem.BackfillRan {
			t.Fatalf("%q: %v", l, err)
		}
		dates = append(dates, r.Date)
	}
	sort.Strings(dates)
	if strings.Join(dates, " ") != "2024-03-01T00:00:00.5Z 2024-03-01T00:00:01.5Z 2024-03-01T00:00:01Z" {
		t.Fatalf("dates %v", dates)
	}
}
