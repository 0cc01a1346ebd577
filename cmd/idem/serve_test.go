package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
)

type proxy struct {
	cmd         *exec.Cmd
	addr, admin string
	stderr      *strings.Builder
	done        chan error
}

var listenRE = regexp.MustCompile(`listening on (\S+), .*?(?:, admin on (\S+))?$`)

// startServe runs `idem serve` on a free port and waits until it listens.
func startServe(t *testing.T, args ...string) *proxy {
	t.Helper()
	cmd := exec.Command(conformance.Binary(t), append([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, args...)...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proxy{cmd: cmd, stderr: &strings.Builder{}, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.WriteString(line + "\n")
			if m := listenRE.FindStringSubmatch(line); m != nil && p.addr == "" {
				p.addr, p.admin = m[1], m[2]
				close(ready)
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("idem serve did not start: %s", p.stderr.String())
	}
	return p
}

func post(t *testing.T, url, key, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// countingUpstream answers 201 with the call number; block, if set, holds
// each call until it is closed.
func countingUpstream(t *testing.T, block func(n int64)) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		io.Copy(io.Discard, r.Body)
		if block != nil {
			block(n)
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "call %d", n)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// engines are idem serve's front ends (the hidden --engine flag): every
// serve test runs on each.
var engines = []string{"fast", "std"}

func TestServeProxy(t *testing.T) {
	for _, engine := range engines {
		for name, store := range keyStoreURLs(t) {
			t.Run(engine+"/"+name, func(t *testing.T) { testServeProxy(t, engine, store) })
		}
	}
}

func testServeProxy(t *testing.T, engine, store string) {
	up, calls := countingUpstream(t, nil)
	p := startServe(t, "--upstream", up.URL, "--store", store, "--engine", engine)
	key := `"` + idem.NewToken() + `"`
	if st, h, b := post(t, "http://"+p.addr+"/charge", key, "a"); st != 201 || h.Get("Idempotent-Replayed") != "" || b != "call 1" {
		t.Fatalf("first: %d %v %q", st, h, b)
	}
	if st, h, b := post(t, "http://"+p.addr+"/charge", key, "a"); st != 201 || h.Get("Idempotent-Replayed") != "true" || b != "call 1" {
		t.Fatalf("replay: %d %v %q", st, h, b)
	}
	if st, _, _ := post(t, "http://"+p.addr+"/charge", key, "b"); st != 422 {
		t.Fatalf("other body: %d", st)
	}
	post(t, "http://"+p.addr+"/charge", "", "a")
	if calls.Load() != 2 {
		t.Fatalf("upstream calls %d, want 2", calls.Load())
	}
	if st, b := get(t, "http://"+p.admin+"/healthz"); st != 200 || b != "ok\n" {
		t.Fatalf("healthz: %d %q", st, b)
	}
	_, m := get(t, "http://"+p.admin+"/metrics")
	for _, want := range []string{`idem_requests_total{outcome="forwarded"} 1`, `idem_requests_total{outcome="replayed"} 1`,
		`idem_requests_total{outcome="mismatch"} 1`, `idem_requests_total{outcome="unkeyed"} 1`, `idem_requests_total{outcome="store_error"} 0`,
		`idem_request_duration_seconds_count{outcome="forwarded"} 1`} {
		if !strings.Contains(m, want) {
			t.Fatalf("metrics lack %s:\n%s", want, m)
		}
	}
}

// TestServeStartErrors: bad flags exit 2, an unreachable store exits 1.
func TestServeStartErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve"}, 2, "--upstream"},
		{[]string{"serve", "--upstream", "not a url"}, 2, "not an http"},
		{[]string{"serve", "--upstream", "ftp://x"}, 2, "not an http"},
		{[]string{"serve", "--upstream", "http://127.0.0.1:1", "--store", "mongodb://x"}, 2, "scheme"},
		{[]string{"serve", "--upstream", "http://127.0.0.1:1", "--store", "redis://:s3cret@127.0.0.1:1/0"}, 1, "redis"},
		{[]string{"serve", "--upstream", "http://127.0.0.1:1", "--store", "postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=2"}, 1, "postgres"},
	} {
		r := conformance.RunCLI(t, tc.args...)
		if r.Code != tc.code || !strings.Contains(r.Stderr, tc.want) || strings.Contains(r.Stderr, "s3cret") {
			t.Fatalf("%q: exit %d %s; want %d mentioning %q", tc.args, r.Code, r.Stderr, tc.code, tc.want)
		}
	}
}

// TestServeKilledMidRequest: SIGKILL the proxy while the upstream works on
// a request. A new proxy answers 409 until the lease ends, then forwards
// the retry exactly once, then replays.
func TestServeKilledMidRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("SIGKILL test skipped with -short")
	}
	for _, engine := range engines {
		for name, store := range keyStoreURLs(t) {
			t.Run(engine+"/"+name, func(t *testing.T) {
				t.Parallel()
				testServeKilled(t, engine, store)
			})
		}
	}
}

func testServeKilled(t *testing.T, engine, store string) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	up, calls := countingUpstream(t, func(n int64) {
		if n == 1 {
			started <- struct{}{}
			<-release
		}
	})
	defer close(release)
	p1 := startServe(t, "--upstream", up.URL, "--store", store, "--lease", "1s", "--engine", engine)
	key := `"` + idem.NewToken() + `"`
	go func() {
		req, _ := http.NewRequest("POST", "http://"+p1.addr+"/pay", strings.NewReader("x"))
		req.Header.Set("Idempotency-Key", key)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	p1.cmd.Process.Signal(syscall.SIGKILL)
	<-p1.done
	p2 := startServe(t, "--upstream", up.URL, "--store", store, "--lease", "1s", "--engine", engine)
	if st, h, _ := post(t, "http://"+p2.addr+"/pay", key, "x"); st != 409 || h.Get("Retry-After") == "" {
		t.Fatalf("retry while the dead proxy's lease runs: %d, want 409 with Retry-After", st)
	}
	time.Sleep(1300 * time.Millisecond)
	if st, h, b := post(t, "http://"+p2.addr+"/pay", key, "x"); st != 201 || h.Get("Idempotent-Replayed") != "" || b != "call 2" {
		t.Fatalf("retry after the lease: %d %v %q, want a fresh call 2", st, h, b)
	}
	for i := 0; i < 3; i++ {
		if st, h, b := post(t, "http://"+p2.addr+"/pay", key, "x"); st != 201 || h.Get("Idempotent-Replayed") != "true" || b != "call 2" {
			t.Fatalf("later retry: %d %v %q, want the replay of call 2", st, h, b)
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("upstream calls %d, want 2 (the lost one and exactly one re-execution)", calls.Load())
	}
}

// TestServeGracefulShutdown: SIGTERM during a request lets it finish and
// record its response, then the proxy exits 0.
func TestServeGracefulShutdown(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) { testServeGracefulShutdown(t, engine) })
	}
}

func testServeGracefulShutdown(t *testing.T, engine string) {
	store := "sqlite:" + t.TempDir() + "/k.db"
	up, _ := countingUpstream(t, func(int64) { time.Sleep(800 * time.Millisecond) })
	p := startServe(t, "--upstream", up.URL, "--store", store, "--engine", engine)
	key := `"` + idem.NewToken() + `"`
	type res struct {
		st int
		b  string
	}
	got := make(chan res, 1)
	go func() {
		st, _, b := post(t, "http://"+p.addr+"/slow", key, "x")
		got <- res{st, b}
	}()
	time.Sleep(200 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGTERM)
	r := <-got
	if r.st != 201 || r.b != "call 1" {
		t.Fatalf("in-flight request during shutdown: %d %q", r.st, r.b)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idem serve did not exit after SIGTERM")
	}
	// The response was recorded before exit: a new proxy replays it.
	p2 := startServe(t, "--upstream", up.URL, "--store", store, "--engine", engine)
	if st, h, b := post(t, "http://"+p2.addr+"/slow", key, "x"); st != 201 || h.Get("Idempotent-Replayed") != "true" || b != "call 1" {
		t.Fatalf("after restart: %d %v %q", st, h, b)
	}
}
