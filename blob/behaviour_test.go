package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/source"
)

// backends runs fn against a fresh file: target and, when the S3 server is
// configured, a fresh s3:// one.
func backends(t *testing.T, fn func(t *testing.T, newURL func(t *testing.T) string)) {
	t.Run("file", func(t *testing.T) {
		fn(t, func(t *testing.T) string { return "file:" + t.TempDir() })
	})
	t.Run("s3", func(t *testing.T) {
		s3URL(t) // skips loudly (fails under CI) when IDEM_TEST_S3 is unset
		fn(t, func(t *testing.T) string { return withParam(s3URL(t), "lease", "2s") })
	})
}

func openT(t *testing.T, url string) *Target {
	t.Helper()
	tg, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// countingStore records every write and delete.
type countingStore struct {
	Store
	mu      sync.Mutex
	puts    []string
	deletes []string
}

func (c *countingStore) Put(ctx context.Context, key string, data []byte) (string, error) {
	c.mu.Lock()
	c.puts = append(c.puts, key)
	c.mu.Unlock()
	return c.Store.Put(ctx, key, data)
}

func (c *countingStore) Delete(ctx context.Context, key string) error {
	c.mu.Lock()
	c.deletes = append(c.deletes, key)
	c.mu.Unlock()
	return c.Store.Delete(ctx, key)
}

func (c *countingStore) reset() { c.puts, c.deletes = nil, nil }

// dataWrites are the writes outside the ledger folder.
func dataWrites(keys []string) []string {
	var out []string
	for _, k := range keys {
		if !strings.Contains(k, "/"+runsDir) {
			out = append(out, k)
		}
	}
	return out
}

// snapshot is every object of a table but its ledger and locks, by key, as
// a content hash.
func snapshot(t *testing.T, st Store, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(p string)
	walk = func(p string) {
		objs, dirs, err := st.List(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if strings.HasPrefix(o.Name, lockName) {
				continue
			}
			b, err := st.Get(context.Background(), p+o.Name)
			if err != nil {
				t.Fatal(err)
			}
			s := sha256.Sum256(b)
			out[p+o.Name] = hex.EncodeToString(s[:8])
		}
		for _, d := range dirs {
			if d != runsDir {
				walk(p + d)
			}
		}
	}
	walk(prefix)
	return out
}

// dataFiles keeps the data files of a snapshot (manifests carry run ids
// and times, so only their file lists are expected to repeat).
func dataFiles(s map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range s {
		if strings.Contains(k, "/"+dataPrefix) || strings.HasPrefix(k, dataPrefix) {
			out[k] = v
		}
	}
	return out
}

func diffKeys(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// dayCSV is one day of orders; change alters the amount of one order
// (every order when negative).
func dayCSV(t *testing.T, day, n, change int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("order_id,customer_id,amount,status,order_date\n")
	r := rand.New(rand.NewPCG(uint64(day), 1))
	for i := 0; i < n; i++ {
		id := day*100000 + i
		amt := r.IntN(100000)
		if change > 0 && i == 7 || change < 0 {
			amt -= change
		}
		fmt.Fprintf(&b, "%d,%d,%d.%02d,%s,2024-01-%02d\n", id, r.IntN(5000), amt/100, amt%100, []string{"new", "paid", "shipped"}[r.IntN(3)], day)
	}
	p := filepath.Join(t.TempDir(), fmt.Sprintf("day%d-%d.csv", day, change))
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadFile(t *testing.T, tg idem.Target, spec idem.LoadSpec, file string) *idem.Result {
	t.Helper()
	rr, err := source.Open([]string{file}, nil, source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	d, err := source.Digest([]string{file})
	if err != nil {
		t.Fatal(err)
	}
	spec.InputDigest = fmt.Sprintf("%s|%s|%v|%s", d, spec.Strategy, spec.Key, spec.Partition)
	spec.RunID = fmt.Sprintf("r%d", time.Now().UnixNano())
	spec.Create = true
	res, err := idem.Load(context.Background(), tg, rr, spec)
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	return res
}

func daySpec(day int, strategy idem.Strategy, key string) idem.LoadSpec {
	s := idem.LoadSpec{Table: "orders", Strategy: strategy, Partition: &idem.Partition{Column: "order_date", Value: fmt.Sprintf("2024-01-%02d", day)}}
	if key != "" {
		s.Key = []string{key}
	}
	return s
}

// TestRerunIsByteIdentical: a forced rerun goes through the whole write
// path and writes no data object; a plain rerun takes the fast path; two
// targets loaded on different wall-clock times hold the same bytes; a
// change to one row rewrites only that row's partition.
func TestRerunIsByteIdentical(t *testing.T) {
	backends(t, func(t *testing.T, newURL func(t *testing.T) string) {
		for _, st := range []struct {
			strategy idem.Strategy
			key      string
		}{{idem.ReplacePartition, ""}, {idem.Merge, "order_id"}} {
			t.Run(string(st.strategy), func(t *testing.T) {
				days := []int{3, 4, 5}
				files := map[int]string{}
				for _, d := range days {
					files[d] = dayCSV(t, d, 3000, 0)
				}
				base := openT(t, newURL(t))
				cs := &countingStore{Store: base.st}
				tg := &Target{st: cs, codec: base.codec, rowsPerFile: 1000}
				for _, d := range days {
					loadFile(t, tg, daySpec(d, st.strategy, st.key), files[d])
				}
				first := snapshot(t, cs, tableDir("orders"))
				if n := len(dataFiles(first)); n != 9 {
					t.Fatalf("want 3 files in each of 3 partitions, have %d: %v", n, first)
				}

				cs.reset()
				for _, d := range days {
					s := daySpec(d, st.strategy, st.key)
					s.Force = true
					r := loadFile(t, tg, s, files[d])
					if r.Fast || r.Inserted+r.Updated+r.Deleted != 0 {
						t.Fatalf("forced rerun: %+v", r)
					}
				}
				if w := dataWrites(cs.puts); len(w) != 0 || len(cs.deletes) != 0 {
					t.Fatalf("forced identical rerun wrote %v, deleted %v", w, cs.deletes)
				}
				cs.reset()
				for _, d := range days {
					if r := loadFile(t, tg, daySpec(d, st.strategy, st.key), files[d]); !r.Fast {
						t.Fatalf("identical rerun missed the fast path: %+v", r)
					}
				}
				if w := dataWrites(cs.puts); len(w) != 0 {
					t.Fatalf("identical rerun wrote %v", w)
				}
				if d := diffKeys(first, snapshot(t, cs, tableDir("orders"))); len(d) != 0 {
					t.Fatalf("reruns changed objects: %v", d)
				}

				// Another target, another day on the wall clock: the
				// same data files, byte for byte.
				other := openT(t, newURL(t))
				other.rowsPerFile = 1000
				for _, d := range days {
					s := daySpec(d, st.strategy, st.key)
					s.Now = func() time.Time { return time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC) }
					loadFile(t, other, s, files[d])
				}
				if d := diffKeys(dataFiles(first), dataFiles(snapshot(t, other.st, tableDir("orders")))); len(d) != 0 {
					t.Fatalf("same input on another target gave other bytes: %v", d)
				}

				// One changed row: only its partition is rewritten.
				files[4] = dayCSV(t, 4, 3000, 5)
				cs.reset()
				for _, d := range days {
					r := loadFile(t, tg, daySpec(d, st.strategy, st.key), files[d])
					changed := r.Inserted + r.Updated + r.Deleted
					if d == 4 && changed == 0 || d != 4 && (changed != 0 || !r.Fast) {
						t.Fatalf("day %d: %+v", d, r)
					}
				}
				for _, k := range append(dataWrites(cs.puts), cs.deletes...) {
					if !strings.Contains(k, "order_date=2024-01-04/") {
						t.Fatalf("a one-row change in 2024-01-04 touched %s", k)
					}
				}
				after := snapshot(t, cs, tableDir("orders"))
				changed := diffKeys(first, after)
				if len(changed) == 0 {
					t.Fatal("changed row rewrote nothing")
				}
				for _, k := range changed {
					if !strings.Contains(k, "order_date=2024-01-04/") {
						t.Fatalf("object outside the changed partition differs: %s", k)
					}
				}
				// Keyed rows are sorted by key, so one changed amount
				// changes one file of three; keyless rows keep input order.
				if st.key != "" {
					if n := len(dataWrites(cs.puts)); n != 2 {
						t.Fatalf("keyed one-row change wrote %d objects (want 1 file + manifest): %v", n, cs.puts)
					}
				}
			})
		}
	})
}

func TestPartitionValueEscapes(t *testing.T) {
	tg := openT(t, "file:"+t.TempDir())
	in := filepath.Join(t.TempDir(), "a.csv")
	os.WriteFile(in, []byte("id,v\n1,a\n"), 0o644)
	for _, v := range []string{"../x", "a/b", "/abs", "..", "nul\x00x", `a\b`} {
		rr, _ := source.Open([]string{in}, nil, source.Options{})
		_, err := idem.Load(context.Background(), tg, rr, idem.LoadSpec{Table: "t", Create: true, Partition: &idem.Partition{Column: "region", Value: v}, RunID: "r"})
		rr.Close()
		if idem.ExitCode(err) != idem.ExitBadInput {
			t.Fatalf("--partition region=%q: want exit 2, got %v", v, err)
		}
	}
	ents, _ := os.ReadDir(strings.TrimPrefix(tg.st.String(), "file:"))
	for _, e := range ents {
		if e.Name() != "t" {
			t.Fatalf("an escaping partition created %s", e.Name())
		}
	}
	if _, err := tg.Describe(context.Background(), "t"); err == nil {
		t.Fatal("a refused load created the table")
	}
}

// TestLockWaits holds the table lock from the test: a load with a short
// --lock-timeout gives up with exit 1, one with a long one waits and
// finishes once the lock is released.
func TestLockWaits(t *testing.T) {
	backends(t, func(t *testing.T, newURL func(t *testing.T) string) {
		url := newURL(t)
		tg := openT(t, url)
		in := dayCSV(t, 6, 500, 0)
		args := []string{"load", in, "--to", url, "--table", "orders", "--partition", "order_date=2024-01-06"}
		if r := conformance.RunCLI(t, args...); r.Code != 0 {
			t.Fatalf("first load: %d %s", r.Code, r.Stderr)
		}
		ctx := context.Background()
		l, err := tg.st.Lock(ctx, tableDir("orders")+lockName, false, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		r := conformance.RunCLI(t, append(args, "--force", "--lock-timeout", "500ms")...)
		if r.Code != idem.ExitFailed || !strings.Contains(r.Stderr, "lock timeout") {
			t.Fatalf("want exit 1 and a lock timeout, got %d: %s", r.Code, r.Stderr)
		}
		done := make(chan conformance.CLIResult, 1)
		start := time.Now()
		go func() { done <- conformance.RunCLI(t, append(args, "--force", "--lock-timeout", "1m")...) }()
		time.Sleep(1500 * time.Millisecond)
		select {
		case r := <-done:
			t.Fatalf("load did not wait for the lock: %d %s", r.Code, r.Stderr)
		default:
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		r = <-done
		if r.Code != 0 || time.Since(start) < 1500*time.Millisecond {
			t.Fatalf("waiting load: %d after %v: %s", r.Code, time.Since(start), r.Stderr)
		}
	})
}

// TestConcurrentWritersOnePartition starts two loads of different content
// into one partition at once, several times: the partition must end as
// exactly one of the two inputs, the one whose run the ledger shows last.
func TestConcurrentWritersOnePartition(t *testing.T) {
	backends(t, func(t *testing.T, newURL func(t *testing.T) string) {
		url := withParam(newURL(t), "rows_per_file", "700")
		tg := openT(t, url)
		ins := []string{dayCSV(t, 8, 3000, 0), dayCSV(t, 8, 3000, 9)}
		part := &idem.Partition{Column: "order_date", Value: "2024-01-08"}
		var want [2]idem.Fingerprint
		for i, in := range ins {
			ref := openT(t, newURL(t))
			loadFile(t, ref, idem.LoadSpec{Table: "orders", Partition: part}, in)
			f, err := idem.FingerprintOf(context.Background(), ref, "orders", part)
			if err != nil {
				t.Fatal(err)
			}
			want[i] = f
		}
		if want[0] == want[1] {
			t.Fatal("test inputs do not differ")
		}
		for round := 0; round < 3; round++ {
			var wg sync.WaitGroup
			res := make([]conformance.CLIResult, 2)
			for i := range ins {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					res[i] = conformance.RunCLI(t, "load", ins[i], "--to", url, "--table", "orders", "--partition", "order_date=2024-01-08", "--force", "--json")
				}(i)
			}
			wg.Wait()
			for i, r := range res {
				if r.Code != 0 {
					t.Fatalf("round %d writer %d: %d %s", round, i, r.Code, r.Stderr)
				}
			}
			have, err := idem.FingerprintOf(context.Background(), tg, "orders", part)
			if err != nil {
				t.Fatal(err)
			}
			last, err := tg.LastRun(context.Background(), "orders", part.String())
			if err != nil || last == nil {
				t.Fatal(err)
			}
			if have != want[0] && have != want[1] {
				t.Fatalf("round %d: partition is neither input (rows %d)", round, have.Rows)
			}
			if have.Hex() != last.OutputFingerprint {
				t.Fatalf("round %d: partition %s is not what the last run (%s) left (%s)", round, have.Hex(), last.RunID, last.OutputFingerprint)
			}
			// No file left over from the loser: the folder holds exactly
			// what its manifest lists.
			m, _, err := tg.readManifest(context.Background(), "orders", segment{dir: segDir("order_date", idem.V("2024-01-08"))})
			if err != nil {
				t.Fatal(err)
			}
			objs, _, _ := tg.st.List(context.Background(), tableDir("orders")+segDir("order_date", idem.V("2024-01-08")))
			var names []string
			for _, o := range objs {
				if strings.HasPrefix(o.Name, dataPrefix) {
					names = append(names, o.Name)
				}
			}
			if len(names) != len(m.Files) {
				t.Fatalf("round %d: folder has %d data files, manifest lists %d", round, len(names), len(m.Files))
			}
		}
	})
}

// TestBadTargets: places that cannot be written or reached fail with exit
// 1 and a message that says why, and never print a secret.
func TestBadTargets(t *testing.T) {
	in := dayCSV(t, 9, 10, 0)
	notDir := filepath.Join(t.TempDir(), "plain-file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	r := conformance.RunCLI(t, "load", in, "--to", "file:"+notDir+"/sub", "--table", "orders", "--partition", "order_date=2024-01-09")
	if r.Code != idem.ExitFailed || !strings.Contains(r.Stderr, "plain-file") {
		t.Fatalf("file under a regular file: want exit 1 naming it, got %d: %s", r.Code, r.Stderr)
	}
	ro := t.TempDir()
	os.Chmod(ro, 0o555)
	defer os.Chmod(ro, 0o755)
	if os.Geteuid() != 0 { // root writes anyway
		r = conformance.RunCLI(t, "load", in, "--to", "file:"+ro, "--table", "orders", "--partition", "order_date=2024-01-09")
		if r.Code != idem.ExitFailed || !strings.Contains(r.Stderr, "permission denied") {
			t.Fatalf("read-only dir: want exit 1, got %d: %s", r.Code, r.Stderr)
		}
	}
	r = conformance.RunCLI(t, "load", in, "--to", "file:"+t.TempDir()+"?format=xml", "--table", "orders", "--partition", "order_date=2024-01-09")
	if r.Code != idem.ExitBadInput || !strings.Contains(r.Stderr, "xml") {
		t.Fatalf("bad format option: %d %s", r.Code, r.Stderr)
	}

	t.Run("s3", func(t *testing.T) {
		good := s3URL(t)
		missing := strings.Replace(good, "s3://"+hostOf(t, good), "s3://idem-no-such-bucket-7f3a", 1)
		r := conformance.RunCLI(t, "load", in, "--to", missing, "--table", "orders", "--partition", "order_date=2024-01-09")
		if r.Code != idem.ExitFailed || !strings.Contains(r.Stderr, "does not exist") {
			t.Fatalf("missing bucket: want exit 1, got %d: %s", r.Code, r.Stderr)
		}
		secret := "wrong-secret-" + fmt.Sprint(time.Now().UnixNano())
		real := os.Getenv("AWS_SECRET_ACCESS_KEY")
		r = runEnv(t, []string{"AWS_SECRET_ACCESS_KEY=" + secret}, "load", in, "--to", good, "--table", "orders", "--partition", "order_date=2024-01-09")
		if r.Code != idem.ExitFailed || !strings.Contains(r.Stderr, "access denied") {
			t.Fatalf("wrong credentials: want exit 1 and 'access denied', got %d: %s", r.Code, r.Stderr)
		}
		if strings.Contains(r.Stderr+r.Stdout, secret) || real != "" && strings.Contains(r.Stderr+r.Stdout, real) {
			t.Fatal("a secret key was printed")
		}
		r = conformance.RunCLI(t, "load", in, "--to", strings.Replace(good, "s3://", "s3://user:pw@", 1), "--table", "orders", "--partition", "order_date=2024-01-09")
		if r.Code != idem.ExitBadInput || strings.Contains(r.Stderr, ":pw@") {
			t.Fatalf("credentials in URL: %d %s", r.Code, r.Stderr)
		}
	})
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	h := strings.TrimPrefix(raw, "s3://")
	if i := strings.IndexAny(h, "/?"); i >= 0 {
		h = h[:i]
	}
	return h
}

// runEnv runs the binary with extra environment variables.
func runEnv(t *testing.T, env []string, args ...string) conformance.CLIResult {
	t.Helper()
	old := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		old[k] = os.Getenv(k)
		t.Setenv(k, v)
	}
	r := conformance.RunCLI(t, args...)
	for k, v := range old {
		os.Setenv(k, v)
	}
	return r
}
