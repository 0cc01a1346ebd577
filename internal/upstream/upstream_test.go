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
		{"keyed POST", func(base string) *http.Request {
			r, _ := http.NewRequest("POST", base+"/charge/a%2Fb?x=1&y=%20z", strings.NewReader(`{"amount":100}`))
			r.Header.Set("Idempotency-Key", `"k1"`)
			r.Header.Set("Content-Type", "application/json")
			r.Header.Add("X-Multi", "a")
			r.Header.Add("X-Multi", "b")
			r.Header.Set("Cookie", "sid=abc; theme=dark; flag; q=a=b; e=")
			r.Header.Add("Cookie", "second=line")
			r.Header.Set("User-Agent", "client/1.0")
			return r
		}},
		{"expect 100-continue", func(base string) *http.Request {
			r, _ := http.NewRequest("POST", base+"/charge", strings.NewReader(`{"amount":5}`))
			r.Header.Set("Expect", "100-continue")
			r.Header.Set("Idempotency-Key", `"k2"`)
			return r
		}},
		{"GET without user agent", func(base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/items?page=2", nil)
			r.Header.Set("User-Agent", "")
			return r
		}},
		{"large body", func(base string) *http.Request {
			r, _ := http.NewRequest("PUT", base+"/blob", strings.NewReader(big))
			return r
		}},
		{"chunked body", func(base string) *http.Request {
			pr, pw := io.Pipe()
			go func() { pw.Write([]byte("part one, ")); pw.Write([]byte("part two")); pw.Close() }()
			r, _ := http.NewRequest("POST", base+"/stream", pr)
			return r
		}},
		{"204", func(base string) *http.Request {
			r, _ := http.NewRequest("DELETE", base+"/x", nil)
			r.Header.Set("X-Answer", "204")
			return r
		}},
		{"304", func(base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/x", nil)
			r.Header.Set("X-Answer", "304")
			r.Header.Set("If-None-Match", `"v1"`)
			return r
		}},
		{"HEAD", func(base string) *http.Request {
			r, _ := http.NewRequest("HEAD", base+"/x", nil)
			return r
		}},
		{"set-cookie, no content type", func(base string) *http.Request {
			r, _ := http.NewRequest("POST", base+"/x", strings.NewReader("b"))
			r.Header.Set("X-Answer", "cookies")
			return r
		}},
		{"40 KB request header", func(base string) *http.Request {
			r, _ := http.NewRequest("POST", base+"/x", strings.NewReader("b"))
			r.Header.Set("X-Big-Request", strings.Repeat("r", 40<<10))
			return r
		}},
		{"103 early hints first", func(base string) *http.Request {
			r, _ := http.NewRequest("POST", base+"/x", strings.NewReader("b"))
			r.Header.Set("X-Answer", "early-hints")
			return r
		}},
		{"trailers asked for", func(base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/x", nil)
			r.Header.Set("X-Answer", "trailer")
			r.Header.Set("Te", "trailers")
			return r
		}},
		{"40 KB answer header", func(base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/x", nil)
			r.Header.Set("X-Answer", "big-header")
			return r
		}},
		{"5 MB streamed answer", func(base string) *http.Request {
			r, _ := http.NewRequest("GET", base+"/x", nil)
			r.Header.Set("X-Answer", "big")
			return r
		}},
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
