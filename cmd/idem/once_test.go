package main

import (
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
	"github.com/idemhq/idem/conformance"
)

func lines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestOnceTwentyRuns: `idem once --key k -- sh -c 'echo x >> out'` run 20
// times, 8 of them at once, appends exactly one line, on every store.
func TestOnceTwentyRuns(t *testing.T) {
	for name, store := range keyStoreURLs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "out")
			key := "append-" + idem.NewToken()
			args := []string{"once", "--key", key, "--store", store, "--wait", "60s", "--", "sh", "-c", "echo x >> " + out + "; echo appended"}
			var wg sync.WaitGroup
			results := make([]conformance.CLIResult, 20)
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func(i int) { defer wg.Done(); results[i] = conformance.RunCLI(t, args...) }(i)
			}
			wg.Wait()
			for i := 8; i < 20; i++ {
				results[i] = conformance.RunCLI(t, args...)
			}
			for i, r := range results {
				if r.Code != 0 || r.Stdout != "appended\n" {
					t.Fatalf("run %d: exit %d stdout %q stderr %s", i, r.Code, r.Stdout, r.Stderr)
				}
			}
			if n := lines(t, out); n != 1 {
				t.Fatalf("out has %d lines after 20 runs, want 1", n)
			}
		})
	}
}

func TestOnceBasics(t *testing.T) {
	dir := t.TempDir()
	store := "sqlite:" + filepath.Join(dir, "k.db")
	run := func(args ...string) conformance.CLIResult {
		return conformance.RunCLI(t, append([]string{"once", "--store", store}, args...)...)
	}
	// Stdout is printed and replayed; stderr says when it was done.
	if r := run("--key", "a", "--", "printf", "one\ntwo\n"); r.Code != 0 || r.Stdout != "one\ntwo\n" {
		t.Fatalf("first: %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := run("--key", "a", "--", "false"); r.Code != 0 || r.Stdout != "one\ntwo\n" || !strings.Contains(r.Stderr, "was done at") {
		t.Fatalf("replay: %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
	// A failure is passed on and releases the key.
	marker := filepath.Join(dir, "fail")
	if r := run("--key", "b", "--", "sh", "-c", "echo try >> "+marker+"; exit 3"); r.Code != 3 || !strings.Contains(r.Stderr, "released") {
		t.Fatalf("failing command: %d %s", r.Code, r.Stderr)
	}
	if r := run("--key", "b", "--", "sh", "-c", "echo try >> "+marker); r.Code != 0 || lines(t, marker) != 2 {
		t.Fatalf("retry after failure: %d, %d tries", r.Code, lines(t, marker))
	}
	// Output beyond --max-output is printed once, recorded truncated, and
	// the replay says so.
	if r := run("--key", "c", "--max-output", "4", "--", "echo", "abcdefgh"); r.Stdout != "abcdefgh\n" {
		t.Fatalf("first run prints everything: %q", r.Stdout)
	}
	if r := run("--key", "c", "--", "echo", "x"); r.Stdout != "abcd" || !strings.Contains(r.Stderr, "truncated: 4 of 9 bytes") {
		t.Fatalf("truncated replay: %q %s", r.Stdout, r.Stderr)
	}
	// --resolve of a key nobody claimed (a typo, or expired) is refused
	// and records nothing: the key's command still runs afterwards.
	for _, how := range []string{"done", "retry"} {
		if r := run("--resolve", "never-"+how, how); r.Code != 2 || !strings.Contains(r.Stderr, "no abandoned claim") {
			t.Fatalf("--resolve %s of an unknown key: %d %s", how, r.Code, r.Stderr)
		}
		if r := run("--key", "never-"+how, "--", "echo", "ran"); r.Code != 0 || r.Stdout != "ran\n" {
			t.Fatalf("after refusing to resolve it, the key's command: %d %q %s", r.Code, r.Stdout, r.Stderr)
		}
	}
	// Held by a running call: exit 75 at once, or after --wait.
	cmd := exec.Command(conformance.Binary(t), "once", "--store", store, "--key", "held", "--", "sleep", "3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if r := run("--key", "held", "--", "true"); r.Code != idem.ExitTempFail || !strings.Contains(r.Stderr, "held") {
		t.Fatalf("held: %d %s", r.Code, r.Stderr)
	}
	if r := run("--key", "held", "--wait", "700ms", "--", "true"); r.Code != idem.ExitTempFail || time.Since(start) < 700*time.Millisecond {
		t.Fatalf("held with --wait: %d after %v", r.Code, time.Since(start))
	}
	if r := run("--key", "held", "--wait", "20s", "--", "echo", "second"); r.Code != 0 || r.Stdout != "" {
		t.Fatalf("waiting for the holder: %d %q (want the holder's empty output)", r.Code, r.Stdout)
	}
	// Bad input: exit 2; unreachable store: exit 1.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--", "true"}, 2, "--key"},
		{[]string{"--key", strings.Repeat("k", 256), "--", "true"}, 2, "255"},
		{[]string{"--key", "k"}, 2, "no command"},
		{[]string{"--key", "k", "--", "/nonexistent/cmd"}, 2, "nonexistent"},
		{[]string{"--key", "k", "--store", "mongodb://x", "--", "true"}, 2, "scheme"},
		{[]string{"--key", "k", "--store", "redis://:s3cret@127.0.0.1:1/0", "--", "true"}, 1, "redis"},
		{[]string{"--resolve", "k", "maybe"}, 2, "done|retry"},
	} {
		r := conformance.RunCLI(t, append([]string{"once"}, tc.args...)...)
		if r.Code != tc.code || !strings.Contains(r.Stderr, tc.want) || strings.Contains(r.Stderr, "s3cret") {
			t.Fatalf("%q: exit %d %s; want %d mentioning %q", tc.args, r.Code, r.Stderr, tc.code, tc.want)
		}
	}
}

// startHolder starts `idem once` whose command logs a line and then
// sleeps, and waits until the line is there.
func startHolder(t *testing.T, store, key, log string, extra ...string) *exec.Cmd {
	t.Helper()
	args := append([]string{"once", "--store", store, "--key", key, "--lease", "1s"}, extra...)
	args = append(args, "--", "sh", "-c", "echo run >> "+log+"; exec sleep 30")
	cmd := exec.Command(conformance.Binary(t), args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; lines(t, log) == 0; i++ {
		if i > 200 {
			cmd.Process.Kill()
			t.Fatal("holder did not start its command")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd
}

// TestOnceKilledHolder: a holder killed with SIGKILL (at a random moment
// of its command) leaves a claim that blocks until the lease ends; then
// exactly one later call runs the command again; with --at-most-once no
// call does until --resolve.
func TestOnceKilledHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("SIGKILL test skipped with -short")
	}
	for name, store := range keyStoreURLs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			log := filepath.Join(dir, "log")
			key := "kill-" + idem.NewToken()
			cmd := startHolder(t, store, key, log)
			time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond) // heartbeats have renewed the lease meanwhile
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			again := []string{"once", "--store", store, "--key", key, "--lease", "1s", "--", "sh", "-c", "echo run >> " + log}
			if r := conformance.RunCLI(t, again...); r.Code != idem.ExitTempFail {
				t.Fatalf("right after the kill: exit %d, want 75 (lease still running): %s", r.Code, r.Stderr)
			}
			time.Sleep(1200 * time.Millisecond)
			var wg sync.WaitGroup
			codes := make([]int, 6)
			for i := range codes {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					codes[i] = conformance.RunCLI(t, append(again[:5:5], append([]string{"--wait", "30s"}, again[5:]...)...)...).Code
				}(i)
			}
			wg.Wait()
			for _, c := range codes {
				if c != 0 {
					t.Fatalf("after the lease: exit codes %v", codes)
				}
			}
			if n := lines(t, log); n != 2 {
				t.Fatalf("command ran %d times in all, want 2 (the killed run and exactly one re-execution)", n)
			}

			// --at-most-once: exit 4, nothing runs, until resolved.
			key2 := "amo-" + idem.NewToken()
			log2 := filepath.Join(dir, "log2")
			cmd = startHolder(t, store, key2, log2, "--at-most-once")
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			time.Sleep(1200 * time.Millisecond)
			amo := []string{"once", "--store", store, "--key", key2, "--at-most-once", "--", "sh", "-c", "echo run >> " + log2}
			for i := 0; i < 2; i++ {
				if r := conformance.RunCLI(t, amo...); r.Code != idem.ExitUnknown || !strings.Contains(r.Stderr, "--resolve") {
					t.Fatalf("abandoned key with --at-most-once: exit %d %s, want 4", r.Code, r.Stderr)
				}
			}
			if n := lines(t, log2); n != 1 {
				t.Fatalf("at-most-once: command ran %d times, want 1", n)
			}
			if r := conformance.RunCLI(t, "once", "--store", store, "--resolve", key2, "retry"); r.Code != 0 {
				t.Fatalf("resolve retry: %d %s", r.Code, r.Stderr)
			}
			if r := conformance.RunCLI(t, amo...); r.Code != 0 || lines(t, log2) != 2 {
				t.Fatalf("after resolve retry: exit %d, %d runs", r.Code, lines(t, log2))
			}
			// --resolve done: recorded as done without running.
			key3 := "amo-done-" + idem.NewToken()
			log3 := filepath.Join(dir, "log3")
			cmd = startHolder(t, store, key3, log3, "--at-most-once")
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			time.Sleep(1200 * time.Millisecond)
			if r := conformance.RunCLI(t, "once", "--store", store, "--resolve", key3, "done"); r.Code != 0 {
				t.Fatalf("resolve done: %d %s", r.Code, r.Stderr)
			}
			r := conformance.RunCLI(t, "once", "--store", store, "--key", key3, "--", "sh", "-c", "echo run >> "+log3)
			if r.Code != 0 || lines(t, log3) != 1 || !strings.Contains(r.Stderr, "resolved as done") {
				t.Fatalf("after resolve done: exit %d, %d runs, %s", r.Code, lines(t, log3), r.Stderr)
			}
		})
	}
}
