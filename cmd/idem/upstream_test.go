package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// keyedRequest builds a request as the middleware hands it on: body in
// memory, GetBody set, an Idempotency-Key header.
func keyedRequest(t *testing.T, target, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Idempotency-Key", `"k"`)
	return req
}

func roundTrip(t *testing.T, rt http.RoundTripper, req *http.Request) (int, string) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// fallbackCounter is the http.Transport behind the direct path, counting
// what reaches it.
type fallbackCounter struct {
	n  atomic.Int64
	rt http.RoundTripper
}

func (f *fallbackCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	f.n.Add(1)
	return f.rt.RoundTrip(r)
}

func newTestTransport(t *testing.T, srvURL string, maxConns int) (*upstreamTransport, *fallbackCounter) {
	u, _ := url.Parse(srvURL)
	fb := &fallbackCounter{rt: http.DefaultTransport.(*http.Transport).Clone()}
	tr := newUpstreamTransport(u.Host, fb, maxConns)
	t.Cleanup(tr.CloseIdleConnections)
	return tr, fb
}

// TestUpstreamReuse: keyed requests in a row share one connection, bodies
// of every framing arrive whole, and only a streamed body takes the
// fallback.
func TestUpstreamReuse(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			w.Write(b)
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write([]byte("!"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusCreated)
			w.Write(b)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr, fb := newTestTransport(t, srv.URL, 8)
	for i := 0; i < 50; i++ {
		body := fmt.Sprintf("body %d", i)
		if st, b := roundTrip(t, tr, keyedRequest(t, srv.URL+"/x", body)); st != 201 || b != body {
			t.Fatalf("request %d: %d %q", i, st, b)
		}
		if st, b := roundTrip(t, tr, keyedRequest(t, srv.URL+"/chunked", body)); st != 200 || b != body+"!" {
			t.Fatalf("chunked %d: %d %q", i, st, b)
		}
		if st, b := roundTrip(t, tr, keyedRequest(t, srv.URL+"/empty", body)); st != 204 || b != "" {
			t.Fatalf("empty %d: %d %q", i, st, b)
		}
		get, _ := http.NewRequest("GET", srv.URL+"/x", nil)
		if st, b := roundTrip(t, tr, get); st != 201 || b != "" {
			t.Fatalf("get %d: %d %q", i, st, b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections to the upstream, want 1", n)
	}
	if fb.n.Load() != 0 {
		t.Errorf("%d requests took the fallback, want 0", fb.n.Load())
	}
	// A streamed body (no GetBody) cannot be resent: the fallback takes it.
	req, _ := http.NewRequest("POST", srv.URL+"/x", io.MultiReader(strings.NewReader("streamed")))
	if st, b := roundTrip(t, tr, req); st != 201 || b != "streamed" {
		t.Fatalf("streamed: %d %q", st, b)
	}
	if fb.n.Load() != 1 {
		t.Errorf("%d requests took the fallback, want 1", fb.n.Load())
	}
}

// TestUpstreamStaleConnection: an upstream that closes each connection
// after one answer (without saying so) leaves a dead idle connection. One
// idle for long is seen to be closed before use; one that comes back at
// once is used, fails without an answer, and the keyed request is sent
// again on a new connection. Either way the upstream runs it once.
func TestUpstreamStaleConnection(t *testing.T) {
	for _, tc := range []struct {
		idle   time.Duration
		resent int64
	}{{50 * time.Millisecond, 4}, {150 * time.Millisecond, 0}} {
		t.Run(tc.idle.String(), func(t *testing.T) { testStale(t, tc.idle, tc.resent) })
	}
}

func testStale(t *testing.T, idle time.Duration, resent int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var calls atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				n := calls.Add(1)
				body := fmt.Sprintf("call %d", n)
				fmt.Fprintf(c, "HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				time.Sleep(20 * time.Millisecond) // let the client park the connection first
			}()
		}
	}()
	tr, _ := newTestTransport(t, "http://"+ln.Addr().String(), 8)
	for i := 1; i <= 5; i++ {
		if st, b := roundTrip(t, tr, keyedRequest(t, "http://"+ln.Addr().String()+"/x", "a")); st != 201 || b != fmt.Sprintf("call %d", i) {
			t.Fatalf("request %d: %d %q", i, st, b)
		}
		time.Sleep(idle) // the upstream has closed it by now
	}
	if calls.Load() != 5 {
		t.Fatalf("upstream ran %d times, want 5", calls.Load())
	}
	if n := tr.resent.Load(); n != resent && runtime.GOOS == "linux" {
		t.Errorf("%d requests resent, want %d", n, resent)
	}
	// Without an Idempotency-Key a POST is not resent: the error shows.
	req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/x", bytes.NewReader([]byte("a")))
	resp, err := tr.RoundTrip(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// It may also have found no idle connection and dialled.
	}
	if calls.Load() > 6 {
		t.Fatalf("upstream ran %d times, want at most 6", calls.Load())
	}
}

// TestUpstreamConnectionLimit: with maxConns connections busy, further
// requests wait for one instead of dialling more.
func TestUpstreamConnectionLimit(t *testing.T) {
	var open, peak atomic.Int64
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(10 * time.Millisecond)
		w.Write([]byte("ok"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			if n := open.Add(1); n > peak.Load() {
				peak.Store(n)
			}
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr, _ := newTestTransport(t, srv.URL, 3)
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := tr.RoundTrip(keyedRequest(t, srv.URL+"/x", "a"))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 3 {
		t.Errorf("%d connections at once, want at most 3", p)
	}
}
