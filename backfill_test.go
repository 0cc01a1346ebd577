package idem_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
)

func backfillSpec(dir string, dates []string, script string) idem.BackfillSpec {
	var jobs []idem.BackfillJob
	for _, d := range dates {
		jobs = append(jobs, idem.BackfillJob{Date: d, Command: []string{"sh", "-c", script, "sh", d, filepath.Join(dir, d)}})
	}
	return idem.BackfillSpec{Jobs: jobs, Parallel: 3, Retries: 2, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Lease: time.Second, TTL: time.Hour, Poll: 50 * time.Millisecond, Stderr: &bytes.Buffer{}}
}

func runBackfill(t *testing.T, store idem.KeyStore, spec idem.BackfillSpec) (map[string]idem.BackfillResult, error) {
	t.Helper()
	got := map[string]idem.BackfillResult{}
	var mu sync.Mutex
	err := idem.Backfill(context.Background(), store, spec, func(r idem.BackfillResult) {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := got[r.Date]; dup {
			t.Errorf("%s reported twice", r.Date)
		}
		got[r.Date] = r
	})
	return got, err
}

func runs(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestBackfillRetriesAndResumes: exit 1 is retried with backoff until it
// passes or retries run out, exit 2 never is; a second backfill runs only
// the dates that did not end done.
func TestBackfillRetriesAndResumes(t *testing.T) {
	dir := t.TempDir()
	store := memstore.New()
	// $1 the date, $2 a file counting its runs: 01 passes, 02 fails once
	// then passes, 03 always exits 1, 04 exits 2.
	script := `echo run >> "$2"; n=$(wc -l < "$2")
case "$1" in 02) [ "$n" -ge 2 ] || exit 1;; 03) exit 1;; 04) exit 2;; esac; echo "loaded $1"`
	spec := backfillSpec(dir, []string{"01", "02", "03", "04"}, script)
	got, err := runBackfill(t, store, spec)
	var ee *idem.ExitError
	if !errors.As(err, &ee) || ee.Code != idem.ExitFailed {
		t.Fatalf("backfill: %v, want exit 1 (a date still failing after its retries)", err)
	}
	want := map[string]struct {
		status   idem.BackfillStatus
		attempts int
		runs     int
	}{
		"01": {idem.BackfillRan, 1, 1},
		"02": {idem.BackfillRan, 2, 2},
		"03": {idem.BackfillFailed, 3, 3}, // 1 + 2 retries
		"04": {idem.BackfillFailed, 1, 1}, // bad input: never retried
	}
	for d, w := range want {
		r := got[d]
		if r.Status != w.status || r.Attempts != w.attempts || runs(t, filepath.Join(dir, d)) != w.runs {
			t.Errorf("%s: %+v after %d runs, want %s after %d attempts and %d runs", d, r, runs(t, filepath.Join(dir, d)), w.status, w.attempts, w.runs)
		}
	}
	if !strings.Contains(spec.Stderr.(*bytes.Buffer).String(), "[01] loaded 01\n") {
		t.Errorf("output not prefixed by date:\n%s", spec.Stderr)
	}

	// The rerun skips 01 and 02 and runs 03 and 04 again.
	got, _ = runBackfill(t, store, spec)
	for d, st := range map[string]idem.BackfillStatus{"01": idem.BackfillSkipped, "02": idem.BackfillSkipped, "03": idem.BackfillFailed, "04": idem.BackfillFailed} {
		if got[d].Status != st {
			t.Errorf("rerun %s: %+v, want %s", d, got[d], st)
		}
	}
	if runs(t, filepath.Join(dir, "01")) != 1 || runs(t, filepath.Join(dir, "04")) != 2 {
		t.Errorf("rerun ran 01 %d times in all (want 1) and 04 %d (want 2)", runs(t, filepath.Join(dir, "01")), runs(t, filepath.Join(dir, "04")))
	}

	// Only bad input left: exit 2.
	spec.Jobs = spec.Jobs[3:]
	if _, err := runBackfill(t, store, spec); !errors.As(err, &ee) || ee.Code != idem.ExitBadInput {
		t.Fatalf("backfill of the bad date only: %v, want exit 2", err)
	}
}

// TestBackfillWaitsForOtherHolder: a date another process holds is not
// run beside it: it is looked at again until that holder completes it
// (then skipped), or until a dead holder's lease ends (then run).
func TestBackfillWaitsForOtherHolder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := memstore.New()
	spec := backfillSpec(dir, []string{"a", "b", "c"}, `echo run >> "$2"`)
	claim := func(j idem.BackfillJob) idem.ClaimResult {
		r, err := store.Claim(ctx, idem.ClaimRequest{Scope: idem.OnceScope, Key: idem.BackfillKey(j), Lease: time.Second, TTL: time.Hour, Takeover: true})
		if err != nil || r.Status != idem.StatusClaimed {
			t.Fatalf("claim %s: %+v %v", j.Date, r, err)
		}
		return r
	}
	live := claim(spec.Jobs[0]) // completes in 300 ms
	claim(spec.Jobs[1])         // dies: its lease ends after 1 s
	go func() {
		time.Sleep(300 * time.Millisecond)
		if err := store.Complete(ctx, idem.OnceScope, idem.BackfillKey(spec.Jobs[0]), live.Token, []byte(`{"exit":0}`), time.Hour); err != nil {
			t.Error(err)
		}
	}()
	start := time.Now()
	got, err := runBackfill(t, store, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got["a"].Status != idem.BackfillSkipped || runs(t, filepath.Join(dir, "a")) != 0 {
		t.Errorf("a, completed by its holder: %+v, ran %d times", got["a"], runs(t, filepath.Join(dir, "a")))
	}
	if got["b"].Status != idem.BackfillRan || runs(t, filepath.Join(dir, "b")) != 1 || time.Since(start) < 900*time.Millisecond {
		t.Errorf("b, whose holder died: %+v, ran %d times after %s", got["b"], runs(t, filepath.Join(dir, "b")), time.Since(start))
	}
	if got["c"].Status != idem.BackfillRan {
		t.Errorf("c: %+v", got["c"])
	}
}

// TestBackfillCommandExit75: a command's own exit 75 (EX_TEMPFAIL) is an
// ordinary failure, retried --retries times; only the claim being held
// elsewhere is waited on without counting. Taking one for the other
// retried such a date forever.
func TestBackfillCommandExit75(t *testing.T) {
	dir := t.TempDir()
	spec := backfillSpec(dir, []string{"x"}, `echo run >> "$2"; exit 75`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []idem.BackfillResult
	err := idem.Backfill(ctx, memstore.New(), spec, func(r idem.BackfillResult) { got = append(got, r) })
	if ctx.Err() != nil || len(got) != 1 || got[0].Status != idem.BackfillFailed || got[0].Exit != 75 || got[0].Attempts != 1 {
		t.Fatalf("%v %+v; want one failed date after its attempts", err, got)
	}
	// 75 is not 1: not retried.
	if n := runs(t, filepath.Join(dir, "x")); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}

// TestBackfillKeyIgnoresInstallPath: a command named idem runs Self, but
// its key keeps the name, so the same backfill from a binary installed
// elsewhere skips what is done.
func TestBackfillKeyIgnoresInstallPath(t *testing.T) {
	dir := t.TempDir()
	store := memstore.New()
	echo, err := exec.LookPath("echo")
	if err != nil {
		t.Fatal(err)
	}
	// The same binary at a second path, as after a move or on another host.
	moved := filepath.Join(dir, "bin", "idem")
	if err := os.MkdirAll(filepath.Dir(moved), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(echo, moved); err != nil {
		t.Fatal(err)
	}
	for i, self := range []string{echo, moved} {
		spec := backfillSpec(dir, nil, "")
		spec.Jobs = []idem.BackfillJob{{Date: "d", Command: []string{"idem", "hello"}}}
		spec.Self = self
		got, err := runBackfill(t, store, spec)
		want := idem.BackfillRan
		if i > 0 {
			want = idem.BackfillSkipped
		}
		if err != nil || got["d"].Status != want {
			t.Fatalf("run %d with %s: %+v %v, want %s", i, self, got["d"], err, want)
		}
		if i == 0 && !strings.Contains(spec.Stderr.(*bytes.Buffer).String(), "[d] hello") {
			t.Fatalf("Self did not run: %q", spec.Stderr)
		}
	}
}

// TestBackfillOutputLines: a date's output from several writers at once
// (the command's stderr, the lease's heartbeat notes) arrives line by
// line, each with its prefix, none lost.
func TestBackfillOutputLines(t *testing.T) {
	dir := t.TempDir()
	spec := backfillSpec(dir, []string{"a", "b"}, `i=0; while [ $i -lt 200 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done`)
	if _, err := runBackfill(t, memstore.New(), spec); err != nil {
		t.Fatal(err)
	}
	out := spec.Stderr.(*bytes.Buffer).String()
	for _, d := range []string{"a", "b"} {
		for _, s := range []string{"out", "err"} {
			if n := strings.Count(out, "["+d+"] "+s+" "); n != 200 {
				t.Errorf("%s %s: %d lines, want 200", d, s, n)
			}
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "[a] ") && !strings.HasPrefix(l, "[b] ") {
			t.Fatalf("a line without its date: %q", l)
		}
	}
}
