package front

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem/httpidem"
	"github.com/idemhq/idem/internal/proxytest"
	"github.com/idemhq/idem/internal/upstream"
	"github.com/idemhq/idem/memstore"
)

// fronts starts both front ends for the upstream at upURL, each with a
// key store of its own, and returns their base URLs.
func fronts(t *testing.T, upURL string) (std, fast string) {
	t.Helper()
	return startStd(t, upURL), startFast(t, upURL)
}

func options(t *testing.T, upURL string) Options {
	t.Helper()
	up, err := url.Parse(upURL)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := upstream.New(up, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	g, err := httpidem.New(httpidem.Options{Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	return Options{Guard: g, Upstream: up, Transport: tr}
}

func startStd(t *testing.T, upURL string) string {
	h, err := Handler(options(t, upURL))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func startFast(t *testing.T, upURL string) string {
	t.Helper()
	return serveFast(t, options(t, upURL))
}

func serveFast(t *testing.T, o Options) string {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return proxytest.Start(t, s)
}

// TestSameAsNetHTTP sends each request through both front ends, twice
// (the second time on a reused connection; a keyed request is then a
// replay): the upstream must see the same request and the client the
// same answer, but for the differences the package documents.
func TestSameAsNetHTTP(t *testing.T) {
	up := proxytest.Echo(t)
	defer up.Close()
	for _, prefix := range []string{"", "/api/v1?tenant=7"} {
		std, fast := fronts(t, up.URL+prefix)
		client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		for _, c := range proxytest.Cases() {
			t.Run(fmt.Sprintf("%s%s", c.Name, prefix), func(t *testing.T) {
				for i := 0; i < 2; i++ {
					want := proxytest.Call(t, client, func() *http.Request { return c.Req(std) })
					got := proxytest.Call(t, client, func() *http.Request { return c.Req(fast) })
					got.Body = strings.ReplaceAll(got.Body, strings.TrimPrefix(fast, "http://"), "PROXY")
					want.Body = strings.ReplaceAll(want.Body, strings.TrimPrefix(std, "http://"), "PROXY")
					expectDifferences(c.Name, &want)
					if !reflect.DeepEqual(got, want) {
						if len(want.Body) > 600 {
							want.Body, got.Body = want.Body[:600], got.Body[:min(600, len(got.Body))]
						}
						t.Fatalf("through fasthttp:\n%+v\nthrough net/http:\n%+v", got, want)
					}
				}
			})
		}
	}
}

// expectDifferences turns net/http's answer into the one the fasthttp
// front end gives by design.
func expectDifferences(name string, want *proxytest.Answer) {
	switch name {
	case "expect 100-continue":
		// The body is in hand when the request is forwarded: the
		// upstream is not asked whether to send it.
		const expect = `"Expect":["100-continue"],`
		want.Body = strings.Replace(want.Body, expect, "", 1)
		n, _ := strconv.Atoi(want.Header.Get("Content-Length"))
		want.Header.Set("Content-Length", strconv.Itoa(n-len(expect)))
	case "set-cookie, no content type":
		// net/http's server guesses a Content-Type the upstream did not
		// send; the fasthttp front end adds none.
		want.Header.Del("Content-Type")
	}
}

// TestHandOver: an upgrade request, and every later request on its
// connection, is served by net/http's front end, which speaks the
// upgraded protocol; the keyed requests before it on the same
// connection were fasthttp's, and the guard holds across the hand-over.
func TestHandOver(t *testing.T) {
	var calls atomic.Int64
	var lastBody atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "echo" {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo: " + line)
			brw.Flush()
			return
		}
		b, _ := io.ReadAll(r.Body)
		lastBody.Store(string(b))
		fmt.Fprintf(w, "call %d", calls.Add(1))
	}))
	defer up.Close()
	fast := startFast(t, up.URL)
	c, err := net.Dial("tcp", strings.TrimPrefix(fast, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	post := func() (string, string) {
		fmt.Fprintf(c, "POST /pay HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \"k\"\r\nContent-Length: 1\r\n\r\nx")
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return string(b), res.Header.Get("Idempotent-Replayed")
	}
	if b, rep := post(); b != "call 1" || rep != "" {
		t.Fatalf("first: %q replayed=%q", b, rep)
	}
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	fmt.Fprintf(c, "hello\n")
	if line, _ := br.ReadString('\n'); line != "echo: hello\n" {
		t.Fatalf("upgraded connection: %q", line)
	}
	// A fresh connection still gets the replay from the fasthttp side.
	c2, err := net.Dial("tcp", strings.TrimPrefix(fast, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c, br = c2, bufio.NewReader(c2)
	if b, rep := post(); b != "call 1" || rep != "true" || calls.Load() != 1 {
		t.Fatalf("after the hand-over: %q replayed=%q, upstream calls %d", b, rep, calls.Load())
	}
	// A chunked keyed request that asks for trailers is handed over with
	// its body, re-framed, and still guarded: sent twice, run once.
	for i, want := range []string{"", "true"} {
		c3, err := net.Dial("tcp", strings.TrimPrefix(fast, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c3, "POST /chunked HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nIdempotency-Key: \"c\"\r\n"+
			"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c3), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		c3.Close()
		if string(b) != "call 2" || res.Header.Get("Idempotent-Replayed") != want {
			t.Fatalf("chunked hand-over, try %d: %d %q replayed=%q", i+1, res.StatusCode, b, res.Header.Get("Idempotent-Replayed"))
		}
	}
	if got := lastBody.Load(); got != "abcde" {
		t.Fatalf("upstream got body %q, want abcde", got)
	}
}

// TestConnectionFields: the client's Connection: close closes the
// client's connection, not the upstream's; the upstream's closes neither;
// fields a Connection field names are dropped both ways; the client's
// X-Forwarded-* are replaced.
func TestConnectionFields(t *testing.T) {
	var last atomic.Value
	up, conns := connCounting(t, func(w http.ResponseWriter, r *http.Request) {
		last.Store(r.Header.Clone())
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		fmt.Fprint(w, "ok")
	})
	fast := startFast(t, up.URL)
	req := func(close bool) *http.Response {
		r, _ := http.NewRequest("GET", fast+"/x", nil)
		r.Close = close
		r.Header.Set("Connection", "X-Private")
		r.Header.Set("X-Private", "p")
		r.Header.Set("X-Forwarded-For", "6.6.6.6")
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	res := req(false)
	if res.Header.Get("X-Hop") != "" || res.Header.Get("Keep-Alive") != "" || res.Close {
		t.Fatalf("answer carried hop-by-hop fields or closed: %v close=%v", res.Header, res.Close)
	}
	h := last.Load().(http.Header)
	if h.Get("X-Private") != "" || h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" {
		t.Fatalf("upstream saw %v", h)
	}
	if res := req(true); !res.Close {
		t.Fatal("the client's Connection: close was not honoured")
	}
	req(false)
	if n := conns.Load(); n != 1 {
		t.Fatalf("upstream connections %d, want 1 (kept across the client's close)", n)
	}
}

// TestBadGateway: no answer from the upstream is 502, and a keyed
// request's key is free again.
func TestBadGateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	fast := startFast(t, "http://"+addr)
	pay := func() *http.Request { return proxytest.Mk("POST", "/pay", "x", "Idempotency-Key", `"k"`)(fast) }
	if a := proxytest.Call(t, http.DefaultClient, pay); a.Status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", a.Status)
	}
	if a := proxytest.Call(t, http.DefaultClient, pay); a.Status != http.StatusBadGateway {
		t.Fatalf("retry: status %d, want another 502 (not 409: the key was released)", a.Status)
	}
}

// TestLargeBodies: an unkeyed upload larger than anything buffered
// streams through; a keyed body over the guard's limit is 413 and is not
// forwarded.
func TestLargeBodies(t *testing.T) {
	var got atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
		fmt.Fprint(w, n)
	}))
	defer up.Close()
	o := options(t, up.URL)
	o.Guard, _ = httpidem.New(httpidem.Options{Store: memstore.New(), MaxRequestBytes: 1 << 20})
	base := serveFast(t, o)
	const size = 30 << 20
	res, err := http.Post(base+"/upload", "application/octet-stream", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != fmt.Sprint(size) {
		t.Fatalf("streamed upload: upstream read %s bytes, want %d", b, size)
	}
	// A client still sending a body the server has refused may see its
	// write fail before it reads the answer: a raw connection reads it.
	got.Store(-1)
	for _, framing := range []string{"Content-Length: 2097152", "Transfer-Encoding: chunked"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /pay HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \"big\"\r\n%s\r\n\r\n", framing)
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < 1<<20+len(chunk); sent += len(chunk) {
			if strings.HasPrefix(framing, "Transfer") {
				fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk)
			} else {
				c.Write(chunk)
			}
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || res.StatusCode != http.StatusRequestEntityTooLarge || got.Load() != -1 {
			t.Fatalf("keyed body over the limit (%s): %v %v, upstream read %d", framing, res, err, got.Load())
		}
	}
}

// TestHeaderLimit: request headers up to 64 KiB pass (net/http's front
// end took 1 MB); a larger one is 431 and is not forwarded.
func TestHeaderLimit(t *testing.T) {
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer up.Close()
	fast := startFast(t, up.URL)
	for _, tc := range []struct {
		size, status int
	}{{60 << 10, http.StatusOK}, {70 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		r, _ := http.NewRequest("GET", fast+"/x", nil)
		r.Header.Set("X-Big", strings.Repeat("h", tc.size))
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Fatalf("%d-byte header: %d, want %d", tc.size, res.StatusCode, tc.status)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("upstream calls %d, want 1", calls.Load())
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestPanicIsContained: a panic while serving a request (here in the
// metrics callback) answers 500 and leaves the server running, as
// net/http's server does; fasthttp's own would end the process.
func TestPanicIsContained(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer up.Close()
	o := options(t, up.URL)
	var n atomic.Int64
	o.Guard, _ = httpidem.New(httpidem.Options{Store: memstore.New(), Observe: func(httpidem.Outcome, time.Duration) {
		if n.Add(1) == 1 {
			panic("boom")
		}
	}})
	base := serveFast(t, o)
	for i, want := range []int{http.StatusInternalServerError, http.StatusOK} {
		res, err := http.Get(base + "/x")
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i+1, res.StatusCode, want)
		}
	}
}

// TestDate: every answer carries one Date, the proxy's own answers
// (replays) included, as net/http's server gave them.
func TestDate(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer up.Close()
	fast := startFast(t, up.URL)
	for i := 0; i < 2; i++ {
		r, _ := http.NewRequest("POST", fast+"/pay", strings.NewReader("x"))
		r.Header.Set("Idempotency-Key", `"d"`)
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if d := res.Header.Values("Date"); len(d) != 1 {
			t.Fatalf("answer %d (replayed=%q): Date %q, want one", i+1, res.Header.Get("Idempotent-Replayed"), d)
		}
	}
}

// TestSameKeysAsNetHTTP: both front ends scope and fingerprint a request
// alike, so a key recorded through one (an older idem serve) is replayed
// through the other, escaped path and all, and a changed body is still
// 422.
func TestSameKeysAsNetHTTP(t *testing.T) {
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "call %d", calls.Add(1))
	}))
	defer up.Close()
	o := options(t, up.URL) // one guard, one store, both front ends
	h, err := Handler(o)
	if err != nil {
		t.Fatal(err)
	}
	std := httptest.NewServer(h)
	defer std.Close()
	fast := serveFast(t, o)
	send := func(base, body string) (int, string, string) {
		r, _ := http.NewRequest("POST", base+"/charge/a%2Fb?x=1&y=%20z", strings.NewReader(body))
		r.Header.Set("Idempotency-Key", `"same"`)
		r.Header.Set("Authorization", "Bearer alice")
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(b), res.Header.Get("Idempotent-Replayed")
	}
	if st, b, rep := send(std.URL, "x"); st != 200 || b != "call 1" || rep != "" {
		t.Fatalf("through net/http: %d %q replayed=%q", st, b, rep)
	}
	if st, b, rep := send(fast, "x"); st != 200 || b != "call 1" || rep != "true" {
		t.Fatalf("through fasthttp: %d %q replayed=%q, want the replay", st, b, rep)
	}
	if st, _, _ := send(fast, "y"); st != http.StatusUnprocessableEntity {
		t.Fatalf("other body through fasthttp: %d, want 422", st)
	}
	if calls.Load() != 1 {
		t.Fatalf("upstream calls %d, want 1", calls.Load())
	}
}

// TestHTTP10Client: an HTTP/1.0 client's request reaches the upstream as
// HTTP/1.1 on a kept connection, and the client's connection closes after
// the answer, as HTTP/1.0 without keep-alive asks.
func TestHTTP10Client(t *testing.T) {
	var proto atomic.Value
	up, conns := connCounting(t, func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		fmt.Fprint(w, "ok")
	})
	fast := startFast(t, up.URL)
	for i := 0; i < 2; i++ {
		b, err := rawExchange(t, fast, "GET /x HTTP/1.0\r\n\r\n")
		if err != nil || !strings.HasSuffix(b, "ok") {
			t.Fatalf("HTTP/1.0 request %d: %q, %v (the proxy must answer and close)", i+1, b, err)
		}
	}
	if p := proto.Load(); p != "HTTP/1.1" || conns.Load() != 1 {
		t.Fatalf("upstream saw %v on %d connections, want HTTP/1.1 on 1", p, conns.Load())
	}
}

// rawExchange writes raw bytes on a new connection and reads until the
// proxy closes it; the error is not nil if it had not within 5 s.
func rawExchange(t *testing.T, base, raw string) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, raw)
	b, err := io.ReadAll(c)
	return string(b), err
}

// connCounting is an upstream serving h that counts the connections
// opened to it.
func connCounting(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	up := httptest.NewUnstartedServer(h)
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	return up, &conns
}

// TestPipelined: requests sent back to back on one connection are
// answered in order; the keyed repeat is a replay.
func TestPipelined(t *testing.T) {
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %d", r.Method, calls.Add(1))
	}))
	defer up.Close()
	fast := startFast(t, up.URL)
	keyed := "POST /pay HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \"p\"\r\nContent-Length: 1\r\n\r\na"
	out, _ := rawExchange(t, fast, keyed+keyed+"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(strings.NewReader(out))
	for i, want := range []struct{ body, replayed string }{{"POST 1", ""}, {"POST 1", "true"}, {"GET 2", ""}} {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v in %q", i+1, err, out)
		}
		b, _ := io.ReadAll(res.Body)
		if string(b) != want.body || res.Header.Get("Idempotent-Replayed") != want.replayed {
			t.Fatalf("answer %d: %q replayed=%q, want %q replayed=%q", i+1, b, res.Header.Get("Idempotent-Replayed"), want.body, want.replayed)
		}
	}
}

// TestNoSmuggling: a request with both Content-Length and
// Transfer-Encoding is read as chunked and ends the connection, so what
// its Content-Length left over is never served as a request of its own.
func TestNoSmuggling(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
	}))
	defer up.Close()
	fast := startFast(t, up.URL)
	rawExchange(t, fast, "POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
	mu.Lock()
	defer mu.Unlock()
	for _, p := range paths {
		if p == "/admin" {
			t.Fatalf("the smuggled request reached the upstream: %q", paths)
		}
	}
}

// TestInformationalOnHandOver: a keyed request that asks for trailers goes
// through net/http's reverse proxy, which passes an upstream's 1xx on as a
// WriteHeader call. An upstream that sends 103 Early Hints and then 503
// has failed: the key must be freed and the retry forwarded, not answered
// with a replayed 200 (the 503's body under the 103's status, as before).
func TestInformationalOnHandOver(t *testing.T) {
	var calls atomic.Int64
	up := httptest.NewServer(proxytest.HintsThenFail(&calls))
	defer up.Close()
	base := startFast(t, up.URL)
	send := func() (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/x", strings.NewReader("b"))
		req.Header.Set("Idempotency-Key", `"k1"`)
		req.Header.Set("TE", "trailers")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Idempotent-Replayed")
	}
	if st, body, _ := send(); st != 503 || body != "down" {
		t.Fatalf("first: %d %q, want the 503", st, body)
	}
	if st, body, rep := send(); st != 201 || body != "made" || rep != "" {
		t.Fatalf("retry: %d %q replayed=%q, want the upstream's new 201", st, body, rep)
	}
	if st, body, rep := send(); st != 201 || body != "made" || rep != "true" {
		t.Fatalf("replay: %d %q replayed=%q, want the stored 201", st, body, rep)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("upstream ran %d times, want 2", n)
	}
}

// TestCutAnswerToClosingClient: an upstream that promises a body and
// closes before sending it all has given no answer. With a client that
// asked to close its connection (Connection: close, or HTTP/1.0), the
// front end reads a small body before answering; a read cut short there
// was ignored, and the empty rest was answered, stored and replayed as
// the upstream's 200 for good. It must be a 502, the key left free, and
// the retry forwarded again, as for a client that keeps its connection.
func TestCutAnswerToClosingClient(t *testing.T) {
	addr, calls := proxytest.RawOnce(t, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
	fast := startFast(t, "http://"+addr)
	for _, tc := range []struct{ name, head string }{
		{"connection-close", "POST /pay HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"},
		{"http-1.0", "POST /pay HTTP/1.0\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := calls.Load()
			key := "Idempotency-Key: \"" + tc.name + "\"\r\n"
			for try := 1; try <= 2; try++ {
				out, _ := rawExchange(t, fast, tc.head+key+"Content-Length: 1\r\n\r\nx")
				if !strings.HasPrefix(out, "HTTP/1.1 502") && !strings.HasPrefix(out, "HTTP/1.0 502") {
					t.Fatalf("try %d: %q, want 502", try, out)
				}
			}
			if n := calls.Load() - before; n != 2 {
				t.Fatalf("upstream called %d times for two tries, want 2 (the key must stay free)", n)
			}
			// Unkeyed, the cut answer is not passed on as a whole one.
			if out, _ := rawExchange(t, fast, tc.head+"Content-Length: 1\r\n\r\nx"); strings.Contains(out, " 200 ") {
				t.Fatalf("unkeyed: %q, want no 200", out)
			}
		})
	}
}

// failingOnce is a listener whose second Accept fails as when the process
// is out of file descriptors.
type failingOnce struct {
	net.Listener
	n atomic.Int64
}

func (l *failingOnce) Accept() (net.Conn, error) {
	if l.n.Add(1) == 2 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptErrorPasses: one accept that fails for a passing reason
// (EMFILE in a burst of connections) must not stop the proxy; fasthttp's
// Serve returned on it, and idem serve shut down with requests in flight.
func TestAcceptErrorPasses(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	s, err := New(options(t, up.URL))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(&failingOnce{Listener: ln}) }()
	defer s.Shutdown(context.Background())
	for i := range 3 {
		out, _ := rawExchange(t, "http://"+ln.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 200") {
			select {
			case err := <-served:
				t.Fatalf("connection %d: %q; Serve had returned: %v", i+1, out, err)
			default:
				t.Fatalf("connection %d: %q", i+1, out)
			}
		}
	}
}

// TestShutdownKeepsHandOver: a request handed to net/http (it asks for
// trailers) just as the server shuts down still gets its answer. fasthttp
// runs the hand-over after its handler returns, so its shutdown did not
// wait for it, and net/http's listener, closed meanwhile, dropped the
// connection unanswered.
func TestShutdownKeepsHandOver(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "answered") }))
	defer up.Close()
	s, err := New(options(t, up.URL))
	if err != nil {
		t.Fatal(err)
	}
	handing := make(chan struct{})
	s.beforePush = func() {
		close(handing)
		time.Sleep(300 * time.Millisecond) // Shutdown starts meanwhile
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	got := make(chan string, 1)
	go func() {
		out, _ := rawExchange(t, "http://"+ln.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
		got <- out
	}()
	<-handing
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if out := <-got; !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.HasSuffix(out, "answered") {
		t.Fatalf("handed-over request during shutdown: %q, want its answer", out)
	}
}
