package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/idem once per test process: crash and concurrency tests
// need a real child process to kill.
func Binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "idem-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "idem")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/idemhq/idem/cmd/idem").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// CLIResult is one finished run of the binary.
type CLIResult struct {
	Code           int
	Stdout, Stderr string
}

// RunCLI runs the binary to completion.
func RunCLI(t *testing.T, args ...string) CLIResult {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return CLIResult{code, out.String(), errb.String()}
}

// ordersCSV makes n deterministic rows; variant changes about 1 row in 7.
func ordersCSV(t *testing.T, n, variant int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("order_id,customer_id,amount,status,order_date,note\n")
	r := rand.New(rand.NewPCG(7, 7))
	for i := 1; i <= n; i++ {
		amt := r.IntN(100000)
		if variant > 0 && (i+variant)%7 == 0 {
			amt += variant
		}
		fmt.Fprintf(&b, "%d,%d,%d.%02d,%s,2024-01-%02d,\"note, \"\"%d\"\"\"\n", i, r.IntN(5000), amt/100, amt%100,
			[]string{"new", "paid", "shipped"}[r.IntN(3)], 1+i%28, r.IntN(1000))
	}
	return writeFile(t, fmt.Sprintf("orders-%d-%d.csv", n, variant), b.String())
}

func testProcess(t *testing.T, b Backend) {
	t.Run("ExitCodes", func(t *testing.T) { testExitCodes(t, b) })
	t.Run("Crash", func(t *testing.T) { testCrash(t, b) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, b) })
	t.Run("Verify", func(t *testing.T) { testVerify(t, b) })
}

// testVerify: `idem verify --crash 5 -- idem load …` passes for every
// strategy. --force makes every run rewrite the table instead of taking the
// rerun fast path, so the kills land in real writes.
func testVerify(t *testing.T, b Backend) {
	if testing.Short() {
		t.Skip("verify with crashes is long; run without -short")
	}
	data := ordersCSV(t, 20000, 0)
	for _, st := range []struct {
		strategy string
		extra    []string
	}{
		{"upsert", []string{"--key", "order_id"}},
		{"insert-missing", []string{"--key", "order_id"}},
		{"merge", []string{"--key", "order_id"}},
		{"replace", nil},
		{"replace-partition", []string{"--partition", "order_date=2024-01-05"}},
	} {
		t.Run(st.strategy, func(t *testing.T) {
			_, url := open(t, b)
			in := data
			scope := []string{}
			if st.strategy == "replace-partition" {
				in = partitionRows(t, data, "2024-01-05")
				scope = []string{"--partition", "order_date=2024-01-05"}
			}
			load := append([]string{Binary(t), "load", in, "--to", url, "--table", "orders", "--strategy", st.strategy, "--force"}, st.extra...)
			args := append([]string{"verify", "--to", url, "--table", "orders", "--key", "order_id", "--crash", "5", "--seed", "42", "--json"}, scope...)
			r := RunCLI(t, append(append(args, "--"), load...)...)
			if r.Code != 0 {
				t.Fatalf("verify exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
			}
			var rep idem.VerifyReport
			if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
				t.Fatalf("verify --json: %v\n%s", err, r.Stdout)
			}
			want := int64(20000)
			if st.strategy == "replace-partition" {
				want = 20000 / 28
			}
			if !rep.Identical || len(rep.Kills) != 5 || len(rep.Fingerprints) != 7 || rep.Rows[0] < want {
				t.Fatalf("report: %+v", rep)
			}
			killed := 0
			for _, k := range rep.Kills {
				if k.Killed {
					killed++
				}
			}
			// Kill moments are spread over the measured run time, so most
			// land mid-run; a loaded machine may let one or two finish first.
			if killed < 2 {
				t.Fatalf("only %d of 5 runs were killed before they finished: %+v", killed, rep.Kills)
			}
		})
	}
}

// partitionRows keeps the header and the rows of one order_date.
func partitionRows(t *testing.T, path, day string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	out := []string{lines[0]}
	for _, l := range lines[1:] {
		if strings.Contains(l, ","+day+",") {
			out = append(out, l)
		}
	}
	return writeFile(t, "part-"+day+".csv", strings.Join(out, "\n")+"\n")
}

func testExitCodes(t *testing.T, b Backend) {
	tg, url := open(t, b)
	good := writeFile(t, "good.csv", v1)
	if r := RunCLI(t, "load", good, "--to", url, "--table", "orders", "--key", "id"); r.Code != 0 {
		t.Fatalf("good load: %d %s", r.Code, r.Stderr)
	}
	before := fp(t, tg, "orders", nil)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown strategy", []string{"load", good, "--to", url, "--table", "orders", "--strategy", "append"}, "unknown strategy"},
		{"upsert without key", []string{"load", good, "--to", url, "--table", "orders", "--strategy", "upsert"}, "needs --key"},
		{"malformed URL", []string{"load", good, "--to", "postgres://user:s3cret@[::1", "--table", "orders", "--key", "id"}, "URL"},
		{"unknown scheme", []string{"load", good, "--to", "oracle://x", "--table", "orders", "--key", "id"}, "scheme"},
		{"missing file", []string{"load", "/nonexistent/x.csv", "--to", url, "--table", "orders", "--key", "id"}, "x.csv"},
		{"bad flag", []string{"load", good, "--to", url, "--table", "orders", "--bogus"}, "bogus"},
		{"bad value", []string{"load", writeFile(t, "bad.csv", "id,day,amount,name\n1,2024-01-01,\"12,5\",a\n"), "--to", url, "--table", "orders", "--key", "id"}, `bad.csv:2:3: column "amount": "12,5" is not a number`},
		{"template without date", []string{"load", good, "--to", url, "--table", "orders", "--partition", "day={{.ExecutionDate}}"}, "--execution-date"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := RunCLI(t, tc.args...)
			if r.Code != idem.ExitBadInput {
				t.Fatalf("exit %d, want 2; stderr: %s", r.Code, r.Stderr)
			}
			if !strings.Contains(r.Stderr, tc.want) {
				t.Fatalf("stderr %q does not mention %q", r.Stderr, tc.want)
			}
			if strings.Contains(r.Stderr, "s3cret") {
				t.Fatalf("password printed: %s", r.Stderr)
			}
			if fp(t, tg, "orders", nil) != before {
				t.Fatal("a rejected command changed the table")
			}
		})
	}
	t.Run("query source", func(t *testing.T) {
		if b.NoQuery != "" {
			t.Skipf("SKIPPED: %s cannot be a --from query source: %s", b.Name, b.NoQuery)
		}
		// A query source: the backend reads from itself, with the
		// execution date templated into the query; the copy must hold
		// exactly the partition's rows.
		r := RunCLI(t, "load", "--from", url, "--query", "SELECT * FROM orders WHERE day = '{{.ExecutionDate}}'",
			"--execution-date", "2024-01-01", "--to", url, "--table", "orders_day", "--key", "id")
		if r.Code != 0 || !strings.Contains(r.Stdout, "3 inserted") {
			t.Fatalf("--query load: %d %s %s", r.Code, r.Stdout, r.Stderr)
		}
		if fp(t, tg, "orders_day", nil) != fp(t, tg, "orders", &idem.Partition{Column: "day", Value: "2024-01-01"}) {
			t.Fatal("--query load did not copy the partition exactly")
		}
		r = RunCLI(t, "load", "--from", url, "--query", "SELECT nope FROM", "--to", url, "--table", "x", "--key", "id")
		if r.Code != idem.ExitBadInput {
			t.Fatalf("bad query: exit %d %s", r.Code, r.Stderr)
		}
	})
	r := RunCLI(t, "load", good, "--to", url, "--table", "orders", "--key", "id", "--json")
	var res idem.Result
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &res) != nil || res.RowsIn != 6 || res.Inserted+res.Updated+res.Deleted != 0 {
		t.Fatalf("rerun --json: %d %q", r.Code, r.Stdout)
	}
	r = RunCLI(t, "runs", "--to", url, "--table", "orders", "--json")
	if r.Code != 0 || strings.Count(r.Stdout, "\n") != 2 {
		t.Fatalf("runs --json: %d %q", r.Code, r.Stdout)
	}
}

// crashRows sizes the crash test's input so a load takes long enough to be
// killed in the middle of each phase.
const crashRows = 150000

// testCrash kills real loads with SIGKILL at random moments: after each kill
// the target must hold exactly the state before the load, and a rerun must
// reach the clean state.
func testCrash(t *testing.T, b Backend) {
	if testing.Short() {
		t.Skip("crash test is long; run without -short")
	}
	tg, url := open(t, b)
	files := []string{ordersCSV(t, crashRows, 0), ordersCSV(t, crashRows, 3)}
	// Kills alternate between a keyed merge and a keyless replace (the
	// row-by-row swap): both make the table exactly the file.
	args := func(f string, i int) []string {
		if i%2 == 1 {
			return []string{"load", f, "--to", url, "--table", "orders", "--strategy", "replace"}
		}
		return []string{"load", f, "--to", url, "--table", "orders", "--key", "order_id", "--strategy", "merge"}
	}
	// Clean end states, from a separate target.
	ref, refURL := open(t, b)
	var want [2]idem.Fingerprint
	var took time.Duration
	for i, f := range files {
		start := time.Now()
		if r := RunCLI(t, "load", f, "--to", refURL, "--table", "orders", "--key", "order_id", "--strategy", "merge"); r.Code != 0 {
			t.Fatalf("clean load: %s", r.Stderr)
		}
		took = max(took, time.Since(start))
		want[i] = fp(t, ref, "orders", nil)
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("crash seed %d, clean load %v", seed, took)

	cur := idem.Fingerprint{} // the table does not exist yet: the first kill hits a first load
	next := 0
	kills := 0
	for i := 0; i < 12; i++ {
		at := time.Duration(rng.Int64N(int64(took) * 9 / 10))
		cmd := exec.Command(Binary(t), args(files[next], i)...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		started := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		finished := false
		select {
		case err := <-done:
			finished = true
			if err != nil {
				t.Fatalf("load failed before the kill: %v %s", err, errb.String())
			}
			// A load that ran to the end is the best estimate of how long
			// the next one runs, so the next kill lands inside it.
			took = time.Since(started)
		case <-time.After(at):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
		have := fp(t, tg, "orders", nil)
		switch {
		case finished && have != want[next]:
			t.Fatalf("kill %d: load finished but state is not the clean one", i)
		case !finished && have != cur && have != want[next]:
			t.Fatalf("kill %d at %v: partial state visible (rows=%d; before rows=%d)", i, at, have.Rows, cur.Rows)
		}
		// The rerun converges. (Its duration is no estimate for the next
		// load: after a kill it may first wait out the dead load's lock
		// lease, which the next load does not.)
		if r := RunCLI(t, args(files[next], i)...); r.Code != 0 {
			t.Fatalf("rerun after kill %d: %d %s", i, r.Code, r.Stderr)
		}
		if have := fp(t, tg, "orders", nil); have != want[next] {
			t.Fatalf("rerun after kill %d did not reach the clean state", i)
		}
		cur = want[next]
		next = 1 - next
	}
	if kills < 10 {
		t.Fatalf("only %d of 12 loads were killed mid-run", kills)
	}
	t.Logf("%d of 12 loads killed mid-run", kills)
}

// testConcurrent runs 8 real processes loading the same partition at once,
// then 8 loading different partitions: every one must succeed (waiting is
// allowed) and the end state must be exact.
func testConcurrent(t *testing.T, b Backend) {
	tg, url := open(t, b)
	const n = 8
	day := func(d int) string {
		var s strings.Builder
		s.WriteString("id,day,v\n")
		for i := 0; i < 2000; i++ {
			fmt.Fprintf(&s, "%d,2024-01-%02d,\"v,%d\"\n", d*10000+i, d, i*d)
		}
		return s.String()
	}
	same := writeFile(t, "same.csv", day(1))
	runAll := func(argsOf func(i int) []string) {
		var wg sync.WaitGroup
		errs := make([]string, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				if r := RunCLI(t, argsOf(i)...); r.Code != 0 {
					errs[i] = fmt.Sprintf("process %d: exit %d: %s", i, r.Code, r.Stderr)
				}
			}(i)
		}
		wg.Wait()
		for _, e := range errs {
			if e != "" {
				t.Fatal(e)
			}
		}
	}
	runAll(func(int) []string {
		return []string{"load", same, "--to", url, "--table", "events", "--key", "id", "--partition", "day=2024-01-01", "--force"}
	})
	schema, err := tg.Describe(ctxb(), "events")
	if err != nil {
		t.Fatal(err)
	}
	if fp(t, tg, "events", nil) != expectFP(t, schema, day(1)) {
		t.Fatalf("8 concurrent loads of one partition: wrong end state (rows %d)", fp(t, tg, "events", nil).Rows)
	}
	runs, _ := tg.Runs(ctxb(), idem.RunFilter{Table: "events"})
	inserted := int64(0)
	for _, r := range runs {
		inserted += r.Inserted
	}
	if len(runs) != n || inserted != 2000 {
		t.Fatalf("ledger: %d runs inserting %d rows, want %d runs inserting 2000", len(runs), inserted, n)
	}
	files := make([]string, n)
	var all strings.Builder
	all.WriteString("id,day,v\n")
	for i := range files {
		files[i] = writeFile(t, fmt.Sprintf("day%d.csv", i+2), day(i+2))
		all.WriteString(strings.SplitN(day(i+2), "\n", 2)[1])
	}
	all.WriteString(strings.SplitN(day(1), "\n", 2)[1])
	runAll(func(i int) []string {
		return []string{"load", files[i], "--to", url, "--table", "events", "--key", "id", "--partition", fmt.Sprintf("day=2024-01-%02d", i+2)}
	})
	if fp(t, tg, "events", nil) != expectFP(t, schema, all.String()) {
		t.Fatal("8 concurrent loads of different partitions: wrong end state")
	}

	// 8 keyless replaces of one partition at once, each comparing row by
	// row: the first to get the lock writes the 200 changed rows, the
	// others find nothing left to change.
	var changed strings.Builder
	changed.WriteString("id,day,v\n")
	for i := 0; i < 2000; i++ {
		v := fmt.Sprintf("\"v,%d\"", i)
		if i%10 == 0 {
			v = "changed"
		}
		fmt.Fprintf(&changed, "%d,2024-01-01,%s\n", 10000+i, v)
	}
	keyless := writeFile(t, "keyless.csv", changed.String())
	runAll(func(int) []string {
		return []string{"load", keyless, "--to", url, "--table", "events", "--partition", "day=2024-01-01", "--strategy", "replace-partition", "--force"}
	})
	part := &idem.Partition{Column: "day", Value: "2024-01-01"}
	if fp(t, tg, "events", part) != expectFP(t, schema, changed.String()) {
		t.Fatal("8 concurrent keyless replaces of one partition: wrong end state")
	}
	runs, _ = tg.Runs(ctxb(), idem.RunFilter{Table: "events", Partition: "day=2024-01-01", ExactPartition: true})
	if len(runs) != 2*n {
		t.Fatalf("ledger of the partition: %d runs, want %d", len(runs), 2*n)
	}
	var ins, del int64
	for _, r := range runs[:n] { // newest first
		ins, del = ins+r.Inserted, del+r.Deleted
	}
	if ins != 200 || del != 200 {
		t.Fatalf("8 concurrent keyless replaces inserted %d and deleted %d rows in all, want 200 and 200", ins, del)
	}
}
