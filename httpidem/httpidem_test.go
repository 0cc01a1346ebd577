package httpidem_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/httpidem"
	"github.com/idemhq/idem/internal/front"
	"github.com/idemhq/idem/internal/proxytest"
	"github.com/idemhq/idem/internal/upstream"
	"github.com/idemhq/idem/memstore"
)

// countingHandler counts calls per request body and answers with a body that
// differs per call, so a replay is told apart from a second execution.
type countingHandler struct {
	calls  atomic.Int64
	delay  time.Duration
	status func(n int64) int
	// cancellable: give up (502) when the request's context ends, as
	// httputil.ReverseProxy does.
	cancellable bool
}

func (u *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := u.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	select {
	case <-time.After(u.delay):
	case <-r.Context().Done():
		if u.cancellable {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		<-time.After(u.delay)
	}
	st := http.StatusCreated
	if u.status != nil {
		st = u.status(n)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Call", fmt.Sprint(n))
	w.WriteHeader(st)
	fmt.Fprintf(w, `{"call":%d,"body":%q}`, n, body)
}

// frontEnd puts the guard in front of a handler: the middleware itself,
// or idem serve's fasthttp front end proxying to the handler on a
// net/http server. Every behaviour test runs on both.
type frontEnd struct {
	name string
	// proxied: the handler is behind a network hop, so a handler that
	// dies mid-request is an upstream that closed its connection.
	proxied bool
	start   func(t *testing.T, m *httpidem.Middleware, h http.Handler) string
}

var frontEnds = []frontEnd{
	{name: "middleware", start: func(t *testing.T, m *httpidem.Middleware, h http.Handler) string {
		srv := httptest.NewServer(m.Wrap(h))
		t.Cleanup(srv.Close)
		return srv.URL
	}},
	{name: "fasthttp-proxy", proxied: true, start: func(t *testing.T, m *httpidem.Middleware, h http.Handler) string {
		up := httptest.NewServer(h)
		t.Cleanup(up.Close)
		u, _ := url.Parse(up.URL)
		tr, err := upstream.New(u, upstream.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.CloseIdleConnections)
		s, err := front.New(front.Options{Guard: m, Upstream: u, Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		return proxytest.Start(t, s)
	}},
}

// site is a guarded handler's address and a client for it.
type site struct {
	URL    string
	client *http.Client
}

func (s *site) Client() *http.Client { return s.client }

func serve(t *testing.T, fe frontEnd, s idem.KeyStore, up http.Handler, mod func(*httpidem.Options)) *site {
	t.Helper()
	o := httpidem.Options{Store: s}
	if mod != nil {
		mod(&o)
	}
	m, err := httpidem.New(o)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(c.CloseIdleConnections)
	return &site{URL: fe.start(t, m, up), client: c}
}

type reply struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, c *http.Client, method, url, key, body string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return reply{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func TestMiddleware(t *testing.T) {
	for _, fe := range frontEnds {
		for _, k := range storeKinds() {
			t.Run(fe.name+"/"+k.name, func(t *testing.T) {
				t.Run("Concurrent1000", func(t *testing.T) { testConcurrent(t, fe, k) })
				t.Run("Semantics", func(t *testing.T) { testSemantics(t, fe, k) })
				t.Run("RetryAfter5xx", func(t *testing.T) { testRetry5xx(t, fe, k) })
				t.Run("StoreDown", func(t *testing.T) { testStoreDown(t, fe, k) })
				t.Run("ClientGone", func(t *testing.T) { testClientGone(t, fe, k) })
				t.Run("SlowHandler", func(t *testing.T) { testSlowHandler(t, fe, k) })
			})
		}
	}
}

// testConcurrent: 1,000 requests with one key and one body at once reach
// the handler exactly once; every other client gets the stored response
// (replayed) or 409.
func testConcurrent(t *testing.T, fe frontEnd, k storeKind) {
	up := &countingHandler{delay: 30 * time.Millisecond}
	srv := serve(t, fe, k.open(t), up, nil)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000}}
	const n = 1000
	key := `"charge-` + idem.NewToken() + `"`
	var wg sync.WaitGroup
	replies := make([]reply, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			replies[i] = do(t, c, "POST", srv.URL+"/charge", key, `{"amount":100}`)
		}(i)
	}
	close(start)
	wg.Wait()
	if got := up.calls.Load(); got != 1 {
		t.Fatalf("upstream called %d times, want exactly 1", got)
	}
	var first, replayed, conflicts int
	for _, r := range replies {
		switch {
		case r.status == http.StatusCreated && r.header.Get("Idempotent-Replayed") == "":
			first++
		case r.status == http.StatusCreated && r.header.Get("Idempotent-Replayed") == "true":
			replayed++
			if r.body != `{"call":1,"body":"{\"amount\":100}"}` || r.header.Get("X-Call") != "1" {
				t.Fatalf("replay differs from the stored response: %q %v", r.body, r.header)
			}
		case r.status == http.StatusConflict:
			conflicts++
			if r.header.Get("Retry-After") == "" || r.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("409 without Retry-After or problem+json: %v", r.header)
			}
		default:
			t.Fatalf("unexpected answer %d %q", r.status, r.body)
		}
	}
	if first != 1 {
		t.Fatalf("%d original responses, want 1", first)
	}
	t.Logf("1 executed, %d replayed, %d conflicts", replayed, conflicts)
	if r := do(t, c, "POST", srv.URL+"/charge", key, `{"amount":100}`); r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("after the race: %d %v, want a replay", r.status, r.header)
	}
}

func testSemantics(t *testing.T, fe frontEnd, k storeKind) {
	up := &countingHandler{}
	srv := serve(t, fe, k.open(t), up, nil)
	c := srv.Client()
	u := srv.URL + "/v1/charges"
	key := `"` + idem.NewToken() + `"`
	r1 := do(t, c, "POST", u, key, `{"a":1}`, "Authorization", "Bearer alice")
	if r1.status != 201 || r1.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %v", r1.status, r1.header)
	}
	r2 := do(t, c, "POST", u, key, `{"a":1}`, "Authorization", "Bearer alice")
	if r2.status != 201 || r2.header.Get("Idempotent-Replayed") != "true" || r2.body != r1.body || r2.header.Get("X-Call") != "1" {
		t.Fatalf("replay: %d %v %q", r2.status, r2.header, r2.body)
	}
	// Same key, different body / query: 422, handler not run.
	for _, tc := range []struct{ url, body string }{{u, `{"a":2}`}, {u + "?x=1", `{"a":1}`}} {
		r := do(t, c, "POST", tc.url, key, tc.body, "Authorization", "Bearer alice")
		if r.status != 422 || r.header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("different request, same key: %d %q", r.status, r.body)
		}
		var p map[string]any
		if json.Unmarshal([]byte(r.body), &p) != nil || p["status"] != float64(422) || p["title"] == "" {
			t.Fatalf("422 body is not problem+json: %q", r.body)
		}
	}
	// Another client (scope header), path or method: independent.
	for _, tc := range []struct{ method, url, auth string }{{"POST", u, "Bearer bob"}, {"POST", u + "/x", "Bearer alice"}, {"PATCH", u, "Bearer alice"}} {
		r := do(t, c, tc.method, tc.url, key, `{"a":1}`, "Authorization", tc.auth)
		if r.status != 201 || r.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("%s %s as %s: %d %v, want a fresh execution", tc.method, tc.url, tc.auth, r.status, r.header)
		}
	}
	if up.calls.Load() != 4 {
		t.Fatalf("upstream calls %d, want 4", up.calls.Load())
	}
	// No key: passed through each time. GET: not covered.
	before := up.calls.Load()
	do(t, c, "POST", u, "", `{}`)
	do(t, c, "POST", u, "", `{}`)
	do(t, c, "GET", u, key, ``)
	if up.calls.Load() != before+3 {
		t.Fatalf("unkeyed requests: %d calls, want 3", up.calls.Load()-before)
	}
	// Bad keys: 400, not forwarded.
	before = up.calls.Load()
	for _, bad := range []string{`unquoted`, `"` + strings.Repeat("k", 256) + `"`, `""`, `"a", "b"`, `12`} {
		if r := do(t, c, "POST", u, bad, `{}`); r.status != 400 || r.header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("key %.20q: %d, want 400 problem+json", bad, r.status)
		}
	}
	if r := do(t, c, "POST", u, `"`+idem.NewToken()+strings.Repeat("k", 255-32)+`"`, `{}`); r.status != 201 {
		t.Fatalf("255-character key: %d", r.status)
	}
	if up.calls.Load() != before+1 {
		t.Fatal("a rejected key reached the upstream")
	}
	// RequireKey: a missing key is 400.
	strict := serve(t, fe, k.open(t), up, func(o *httpidem.Options) { o.RequireKey = true })
	before = up.calls.Load()
	if r := do(t, c, "POST", strict.URL+"/x", "", `{}`); r.status != 400 {
		t.Fatalf("missing key with RequireKey: %d", r.status)
	}
	if up.calls.Load() != before {
		t.Fatal("a request without a key reached the upstream under RequireKey")
	}
}

// testRetry5xx: 500 and 429 are passed on but not stored; the retry is
// forwarded and its 200 is stored.
func testRetry5xx(t *testing.T, fe frontEnd, k storeKind) {
	up := &countingHandler{status: func(n int64) int { return map[int64]int{1: 500, 2: 429}[n] + map[bool]int{true: 200}[n > 2] }}
	srv := serve(t, fe, k.open(t), up, nil)
	c := srv.Client()
	key := `"` + idem.NewToken() + `"`
	for i, want := range []int{500, 429, 200} {
		r := do(t, c, "POST", srv.URL+"/p", key, `x`)
		if r.status != want || r.header.Get("Idempotent-Replayed") != "" || r.header.Get("X-Call") != fmt.Sprint(i+1) {
			t.Fatalf("try %d: %d %v, want a fresh %d", i+1, r.status, r.header, want)
		}
	}
	r := do(t, c, "POST", srv.URL+"/p", key, `x`)
	if r.status != 200 || r.header.Get("Idempotent-Replayed") != "true" || r.header.Get("X-Call") != "3" {
		t.Fatalf("after success: %d %v, want the stored 200", r.status, r.header)
	}
	if up.calls.Load() != 3 {
		t.Fatalf("upstream calls %d, want 3", up.calls.Load())
	}
	if fe.proxied {
		// A handler that dies is an upstream that closed the connection:
		// covered by internal/front's and internal/upstream's tests.
		return
	}
	// A handler that panics gives no answer: the claim is released.
	var panics atomic.Int64
	boom := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if panics.Add(1) == 1 {
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(202)
	})
	srv2 := serve(t, fe, k.open(t), boom, nil)
	req, _ := http.NewRequest("POST", srv2.URL+"/q", strings.NewReader("b"))
	req.Header.Set("Idempotency-Key", key)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("aborted handler answered %d", resp.StatusCode)
	}
	if r := do(t, c, "POST", srv2.URL+"/q", key, "b"); r.status != 202 {
		t.Fatalf("retry after a panic: %d, want the handler to run again", r.status)
	}
}

// testStoreDown: with the store gone, keyed requests get 503 and never
// reach the upstream; unkeyed ones still pass.
func testStoreDown(t *testing.T, fe frontEnd, k storeKind) {
	s, cut := k.openDown(t)
	up := &countingHandler{}
	srv := serve(t, fe, s, up, func(o *httpidem.Options) { o.StoreTimeout = 3 * time.Second })
	c := srv.Client()
	k1 := `"` + idem.NewToken() + `"`
	if r := do(t, c, "POST", srv.URL+"/a", k1, `x`); r.status != 201 {
		t.Fatalf("before the cut: %d", r.status)
	}
	cut()
	before := up.calls.Load()
	for i := 0; i < 5; i++ {
		r := do(t, c, "POST", srv.URL+"/a", fmt.Sprintf(`"k-%d"`, i), `x`)
		if r.status != 503 || r.header.Get("Retry-After") == "" || r.header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("store down: %d %v %q, want 503 problem+json with Retry-After", r.status, r.header, r.body)
		}
	}
	// Even a key that was completed before cannot be replayed or re-run.
	if r := do(t, c, "POST", srv.URL+"/a", k1, `x`); r.status != 503 {
		t.Fatalf("completed key with the store down: %d", r.status)
	}
	if got := up.calls.Load(); got != before {
		t.Fatalf("upstream called %d times with the store down", got-before)
	}
}

// testClientGone: a client that hangs up mid-request does not abort the
// handler; the answer is stored and the client's retry gets it.
func testClientGone(t *testing.T, fe frontEnd, k storeKind) {
	up := &countingHandler{delay: 300 * time.Millisecond, cancellable: true}
	srv := serve(t, fe, k.open(t), up, nil)
	key := `"` + idem.NewToken() + `"`
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/p", strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", key)
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the request was expected to time out on the client side")
	}
	time.Sleep(400 * time.Millisecond)
	r := do(t, srv.Client(), "POST", srv.URL+"/p", key, "x")
	if r.status != 201 || r.header.Get("Idempotent-Replayed") != "true" || up.calls.Load() != 1 {
		t.Fatalf("retry after hanging up: %d replayed=%q, upstream calls %d; want the stored answer of the one call",
			r.status, r.header.Get("Idempotent-Replayed"), up.calls.Load())
	}
}

// testSlowHandler: a handler running past the lease keeps its claim (the
// middleware renews it), so a retry meanwhile gets 409, not a second run.
func testSlowHandler(t *testing.T, fe frontEnd, k storeKind) {
	up := &countingHandler{delay: 1500 * time.Millisecond}
	srv := serve(t, fe, k.open(t), up, func(o *httpidem.Options) { o.Lease = 600 * time.Millisecond })
	key := `"` + idem.NewToken() + `"`
	first := make(chan reply, 1)
	go func() { first <- do(t, srv.Client(), "POST", srv.URL+"/slow", key, "x") }()
	time.Sleep(1100 * time.Millisecond)
	if r := do(t, srv.Client(), "POST", srv.URL+"/slow", key, "x"); r.status != 409 {
		t.Fatalf("retry while a slow first request runs past its lease: %d, want 409", r.status)
	}
	if r := <-first; r.status != 201 || up.calls.Load() != 1 {
		t.Fatalf("first: %d, upstream calls %d", r.status, up.calls.Load())
	}
}

// TestOversizedResponse: a response over MaxResponseBytes is returned once
// in full; replays carry its status and headers, an empty body and
// Idempotent-Body-Omitted, and the handler does not run again.
func TestOversizedResponse(t *testing.T) {
	for _, fe := range frontEnds {
		t.Run(fe.name, func(t *testing.T) { testOversizedResponse(t, fe) })
	}
}

func testOversizedResponse(t *testing.T, fe frontEnd) {
	var calls atomic.Int64
	big := strings.Repeat("x", 5000)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("X-Kind", "big")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, big)
	})
	srv := serve(t, fe, memstore.New(), h, func(o *httpidem.Options) { o.MaxResponseBytes = 1000 })
	key := `"` + idem.NewToken() + `"`
	if r := do(t, srv.Client(), "POST", srv.URL+"/big", key, "b"); r.status != 202 || r.body != big {
		t.Fatalf("first: %d, %d bytes", r.status, len(r.body))
	}
	r := do(t, srv.Client(), "POST", srv.URL+"/big", key, "b")
	if r.status != 202 || r.body != "" || r.header.Get("Idempotent-Body-Omitted") != "true" ||
		r.header.Get("Idempotent-Replayed") != "true" || r.header.Get("X-Kind") != "big" || calls.Load() != 1 {
		t.Fatalf("replay: %d %q %v, calls %d", r.status, r.body, r.header, calls.Load())
	}
}

// TestInformationalThenError: a handler (or upstream) that sends 103 Early
// Hints and then a 503 has failed. The key must be released, the next try
// must run the handler again, and nobody may be told 200. A recorder that
// took the first status it saw stored the 103 and replayed the failure as
// a success with the 503's body.
func TestInformationalThenError(t *testing.T) {
	for _, fe := range frontEnds {
		t.Run(fe.name, func(t *testing.T) {
			var calls atomic.Int64
			h := proxytest.HintsThenFail(&calls)
			srv := serve(t, fe, memstore.New(), h, nil)
			key := `"` + idem.NewToken() + `"`
			if r := do(t, srv.Client(), "POST", srv.URL+"/x", key, "b"); r.status != 503 || r.body != "down" {
				t.Fatalf("first: %d %q, want the 503", r.status, r.body)
			}
			if r := do(t, srv.Client(), "POST", srv.URL+"/x", key, "b"); r.status != 201 || r.body != "made" || r.header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("retry after the 503: %d %q %v, want the handler's new 201", r.status, r.body, r.header)
			}
			if r := do(t, srv.Client(), "POST", srv.URL+"/x", key, "b"); r.status != 201 || r.body != "made" || r.header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("replay: %d %q %v, want the stored 201", r.status, r.body, r.header)
			}
			if n := calls.Load(); n != 2 {
				t.Fatalf("handler ran %d times, want 2", n)
			}
		})
	}
}

// TestCompletionReplyLost: the store commits a completion but its answer
// is lost; the retried completion finds the key done by that first
// attempt. The response is recorded, so nothing may be logged as lost,
// and the handler does not run again.
func TestCompletionReplyLost(t *testing.T) {
	for _, fe := range frontEnds {
		t.Run(fe.name, func(t *testing.T) {
			var calls atomic.Int64
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(http.StatusCreated)
				io.WriteString(w, "made")
			})
			var logged syncBuffer
			store := &conformance.LostReply{KeyStore: memstore.New()}
			srv := serve(t, fe, store, h, func(o *httpidem.Options) {
				o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
			})
			key := `"` + idem.NewToken() + `"`
			if r := do(t, srv.Client(), "POST", srv.URL+"/x", key, "b"); r.status != 201 {
				t.Fatalf("first: %d", r.status)
			}
			if r := do(t, srv.Client(), "POST", srv.URL+"/x", key, "b"); r.status != 201 || r.header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("replay: %d %v", r.status, r.header)
			}
			if store.Completes() < 2 {
				t.Fatalf("Complete called %d times, want a retry", store.Completes())
			}
			if strings.Contains(logged.String(), "not recorded") || calls.Load() != 1 {
				t.Fatalf("handler ran %d times; log: %s", calls.Load(), logged.String())
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTTLShorterThanLease: a record that expires before its lease would
// let an identical retry run while the first request still does, so New
// refuses the combination (idem serve and idem once check the same).
func TestTTLShorterThanLease(t *testing.T) {
	if _, err := httpidem.New(httpidem.Options{Store: memstore.New(), TTL: 2 * time.Second}); err == nil || !strings.Contains(err.Error(), "Lease") {
		t.Fatalf("TTL 2s with the default 30s lease: %v, want an error naming the lease", err)
	}
	if _, err := httpidem.New(httpidem.Options{Store: memstore.New(), TTL: 2 * time.Second, Lease: time.Second}); err != nil {
		t.Fatalf("TTL 2s, lease 1s: %v", err)
	}
}

// TestBareKeys: an unquoted key (Stripe's form) is refused with 400 by
// default, as the draft wants; with BareKeys it is the key, the same key
// as its quoted form, and a retry replays without calling the handler.
func TestBareKeys(t *testing.T) {
	for _, fe := range frontEnds {
		t.Run(fe.name, func(t *testing.T) {
			up := &countingHandler{}
			strict := serve(t, fe, memstore.New(), up, nil)
			if r := do(t, strict.client, "POST", strict.URL+"/pay", "8e03978e-40d5", `{"a":1}`); r.status != http.StatusBadRequest {
				t.Fatalf("unquoted key without BareKeys: %d, want 400", r.status)
			}
			s := serve(t, fe, memstore.New(), up, func(o *httpidem.Options) { o.BareKeys = true })
			first := do(t, s.client, "POST", s.URL+"/pay", "8e03978e-40d5", `{"a":1}`)
			again := do(t, s.client, "POST", s.URL+"/pay", "8e03978e-40d5", `{"a":1}`)
			quoted := do(t, s.client, "POST", s.URL+"/pay", `"8e03978e-40d5"`, `{"a":1}`)
			if first.status != http.StatusCreated || again.body != first.body || quoted.body != first.body ||
				again.header.Get("Idempotent-Replayed") != "true" || quoted.header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("first %+v, again %+v, quoted %+v", first, again, quoted)
			}
			if n := up.calls.Load(); n != 1 {
				t.Fatalf("handler called %d times, want 1", n)
			}
			if r := do(t, s.client, "POST", s.URL+"/pay", "a,b", `{"a":1}`); r.status != http.StatusBadRequest {
				t.Fatalf("unquoted key with a comma: %d, want 400", r.status)
			}
		})
	}
}

// TestProblemType: a refusal's problem+json names its case under
// ProblemTypePrefix.
func TestProblemType(t *testing.T) {
	s := serve(t, frontEnds[0], memstore.New(), &countingHandler{}, nil)
	r := do(t, s.client, "POST", s.URL+"/x", "not-quoted", "{}")
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.body), &p); err != nil || r.header.Get("Content-Type") != "application/problem+json" ||
		p.Type != httpidem.ProblemTypePrefix+"idempotency-key-invalid" || p.Status != 400 {
		t.Fatalf("%d %q %v: %+v", r.status, r.body, err, p)
	}
}
