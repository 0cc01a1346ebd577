package upstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// seen is what the upstream received.
type seen struct {
	Method, URI, Host string
	Header            http.Header
	ContentLength     int64
	Chunked           bool
	Body              string
}

// echo answers every request with what it received, shaped by the
// request's X-Answer header: "204", "304", "big" (a 5 MB chunked body),
// "cookies" (two Set-Cookie lines, no Content-Type).
func echo(t *testing.T) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := r.Header.Clone()
		h.Del("Accept-Encoding") // net/http's transport asks for gzip on its own
		s := seen{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: h, ContentLength: r.ContentLength,
			Chunked: len(r.TransferEncoding) > 0, Body: string(b)}
		switch r.Header.Get("X-Answer") {
		case "204":
			w.Header().Set("X-Kind", "none")
			w.WriteHeader(http.StatusNoContent)
			return
		case "304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
			return
		case "big":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.WriteHeader(http.StatusOK)
			chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
			for range 80 {
				w.Write(chunk)
				w.(http.Flusher).Flush()
			}
			return
		case "big-header":
			w.Header().Set("X-Big", strings.Repeat("h", 40<<10))
			w.WriteHeader(http.StatusOK)
			return
		case "trailer":
			w.Header().Set("Trailer", "X-Checksum")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("body"))
			w.(http.Flusher).Flush()
			w.Header().Set("X-Checksum", "abc")
			return
		case "early-hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, "final")
			return
		case "cookies":
			w.Header()["Content-Type"] = nil
			w.Header().Add("Set-Cookie", "a=1; Path=/")
			w.Header().Add("Set-Cookie", "b=2; HttpOnly")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, "made")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("X-Multi", "1")
		w.Header().Add("X-Multi", "2")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(s)
	}))
}

// answer is what a client of the proxy saw.
type answer struct {
	Status  int
	Header  http.Header
	Body    string
	Trailer http.Header
}

func proxyWith(t *testing.T, upURL string, tr http.RoundTripper) *httptest.Server {
	up, _ := url.Parse(upURL)
	p := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.SetXForwarded() },
		Transport: tr,
	}
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	return s
}

func call(t *testing.T, c *http.Client, req func() *http.Request) answer {
	t.Helper()
	res, err := c.Do(req())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	h := res.Header.Clone()
	h.Del("Date")
	return answer{Status: res.StatusCode, Header: h, Body: string(b), Trailer: res.Trailer}
}

// TestSameAsNetHTTP sends each request through a reverse proxy on
// net/http's transport and through one on ours: the upstream must see the
// same request and the client the same answer.
func TestSameAsNetHTTP(t *testing.T) {
	up := echo(t)
	defer up.Close()
	u, _ := url.Parse(up.URL)
	ours, err := New(u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ours.CloseIdleConnections()
	std := proxyWith(t, up.URL, http.DefaultTransport.(*http.Transport).Clone())
	fast := proxyWith(t, up.URL, ours)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}

	big := strings.Repeat("x", 70000)
	cases := []struct {
		name string
		req  func(base string) *http.Request
	}{
		{"keyed POST", mk("POST", "/charge/a%2Fb?x=1&y=%20z", `{"amount":100}`,
			"Idempotency-Key", `"k1"`, "Content-Type", "application/json", "X-Multi", "a", "X-Multi", "b",
			"Cookie", "sid=abc; theme=dark; flag; q=a=b; e=", "Cookie", "second=line", "User-Agent", "client/1.0")},
		{"expect 100-continue", mk("POST", "/charge", `{"amount":5}`, "Expect", "100-continue", "Idempotency-Key", `"k2"`)},
		{"GET without user agent", mk("GET", "/items?page=2", "", "User-Agent", "")},
		{"large body", mk("PUT", "/blob", big)},
		{"chunked body", func(base string) *http.Request {
			pr, pw := io.Pipe()
			go func() { pw.Write([]byte("part one, ")); pw.Write([]byte("part two")); pw.Close() }()
			r, _ := http.NewRequest("POST", base+"/stream", pr)
			return r
		}},
		{"204", mk("DELETE", "/x", "", "X-Answer", "204")},
		{"304", mk("GET", "/x", "", "X-Answer", "304", "If-None-Match", `"v1"`)},
		{"HEAD", mk("HEAD", "/x", "")},
		{"set-cookie, no content type", mk("POST", "/x", "b", "X-Answer", "cookies")},
		{"40 KB request header", mk("POST", "/x", "b", "X-Big-Request", strings.Repeat("r", 40<<10))},
		{"103 early hints first", mk("POST", "/x", "b", "X-Answer", "early-hints")},
		{"trailers asked for", mk("GET", "/x", "", "X-Answer", "trailer", "Te", "trailers")},
		{"40 KB answer header", mk("GET", "/x", "", "X-Answer", "big-header")},
		{"5 MB streamed answer", mk("GET", "/x", "", "X-Answer", "big")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := 0; i < 2; i++ { // the second time on a reused connection
				want := call(t, client, func() *http.Request { return c.req(std.URL) })
				got := call(t, client, func() *http.Request { return c.req(fast.URL) })
				// The upstream saw the proxy's own address in X-Forwarded-Host.
				got.Body = strings.ReplaceAll(got.Body, strings.TrimPrefix(fast.URL, "http://"), "PROXY")
				want.Body = strings.ReplaceAll(want.Body, strings.TrimPrefix(std.URL, "http://"), "PROXY")
				if !reflect.DeepEqual(got, want) {
					if len(want.Body) > 400 {
						want.Body, got.Body = want.Body[:400], got.Body[:min(400, len(got.Body))]
					}
					t.Fatalf("through ours:\n%+v\nthrough net/http:\n%+v", got, want)
				}
			}
		})
	}
}

// mk returns a request builder: method and path against a base URL, a
// body (none if empty) and header lines as name, value pairs, added in
// order so a name may repeat.
func mk(method, path, body string, kv ...string) func(base string) *http.Request {
	return func(base string) *http.Request {
		var b io.Reader
		if body != "" {
			b = strings.NewReader(body)
		}
		r, _ := http.NewRequest(method, base+path, b)
		for i := 0; i+1 < len(kv); i += 2 {
			r.Header.Add(kv[i], kv[i+1])
		}
		return r
	}
}

// staleUpstream answers each connection's first request, then closes the
// connection without saying so, as a server whose keep-alive timeout has
// just passed would: the next request sent on it gets no answer.
func staleUpstream(t *testing.T) (addr string, served *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	served = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, r.Body)
				served.Add(1)
				io.WriteString(c, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	return ln.Addr().String(), served
}

// TestRetryOnlyWhatMayBeReplayed: a request that meets a connection the
// server closed is sent again only if it may be replayed (a keyed POST);
// an unkeyed POST gets the error, as with net/http.
func TestRetryOnlyWhatMayBeReplayed(t *testing.T) {
	addr, served := staleUpstream(t)
	u, _ := url.Parse("http://" + addr)
	tr, err := New(u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	send := func(keyed bool) error {
		body := []byte("{}")
		r, _ := http.NewRequest("POST", "http://"+addr+"/charge", bytes.NewReader(body))
		if keyed {
			r.Header.Set("Idempotency-Key", `"k"`)
		}
		res, err := tr.RoundTrip(r)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		return res.Body.Close()
	}
	if err := send(true); err != nil {
		t.Fatal(err)
	}
	// The pooled connection is now closed by the server.
	if err := send(true); err != nil {
		t.Fatalf("keyed POST on a stale connection: %v (want a retry on a new one)", err)
	}
	if got := served.Load(); got != 2 {
		t.Fatalf("upstream served %d requests, want 2", got)
	}
	if err := send(false); err == nil {
		t.Fatal("unkeyed POST on a stale connection succeeded: it must not be retried")
	}
	if got := served.Load(); got != 2 {
		t.Fatalf("upstream served %d requests, want still 2", got)
	}
}

type counting struct {
	n  atomic.Int64
	rt http.RoundTripper
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

// TestUpgradeGoesToFallback: protocol upgrades are net/http's.
func TestUpgradeGoesToFallback(t *testing.T) {
	up := echo(t)
	defer up.Close()
	u, _ := url.Parse(up.URL)
	fb := &counting{rt: http.DefaultTransport}
	tr, err := New(u, Options{Fallback: fb})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest("GET", up.URL+"/ws", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	res, err := tr.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	r, _ = http.NewRequest("GET", up.URL+"/plain", nil)
	res, err = tr.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if fb.n.Load() != 1 {
		t.Fatalf("fallback served %d requests, want 1 (the upgrade)", fb.n.Load())
	}
}

func TestNewRejectsNonHTTP(t *testing.T) {
	for _, s := range []string{"ftp://x", "http://", "/relative"} {
		u, _ := url.Parse(s)
		if _, err := New(u, Options{}); err == nil {
			t.Errorf("New(%q) accepted", s)
		}
	}
}

// TestHTTPSOrigin: an https:// origin is reached over TLS, checked against
// the given roots.
func TestHTTPSOrigin(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls=%v host=%s", r.TLS != nil, r.Host)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	roots := up.Client().Transport.(*http.Transport).TLSClientConfig
	tr, err := New(u, Options{TLS: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	r, _ := http.NewRequest("GET", up.URL+"/x", nil)
	res, err := tr.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := "tls=true host=" + u.Host; string(b) != want {
		t.Fatalf("got %q, want %q", b, want)
	}
	// Without those roots the server's certificate is refused.
	plain, _ := New(u, Options{})
	defer plain.CloseIdleConnections()
	r, _ = http.NewRequest("GET", up.URL+"/x", nil)
	if _, err := plain.RoundTrip(r); err == nil {
		t.Fatal("an unknown certificate was accepted")
	}
}

// TestWaitsForAFreeConnection: past MaxConns a request waits for a
// connection instead of failing at once.
func TestWaitsForAFreeConnection(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		fmt.Fprint(w, "ok")
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	tr, err := New(u, Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			r, _ := http.NewRequest("GET", up.URL+"/x", nil)
			res, err := tr.RoundTrip(r)
			if err == nil {
				_, err = io.ReadAll(res.Body)
				res.Body.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("a request past MaxConns failed instead of waiting: %v", err)
		}
	}
}
