// Package proxytest holds what the tests of idem serve's forwarding
// share: an upstream that echoes what it received, and requests of every
// kind a reverse proxy must pass on unchanged.
package proxytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Seen is what the upstream received.
type Seen struct {
	Method, URI, Host string
	Header            http.Header
	ContentLength     int64
	Chunked           bool
	Body              string
}

// RawOnce is an upstream that reads one request on each connection, drains
// its body, writes answer as raw bytes, and closes: for answers net/http
// would not write (a body cut short, a connection gone stale). served
// counts the requests it read.
func RawOnce(t testing.TB, answer string) (addr string, served *atomic.Int64) {
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
				io.WriteString(c, answer)
			}()
		}
	}()
	return ln.Addr().String(), served
}

// HintsThenFail is a handler that sends 103 Early Hints before each
// answer: 503 "down" the first time, 201 "made" after. calls counts its
// runs.
func HintsThenFail(calls *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "down")
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "made")
	})
}

// Echo answers every request with what it received, shaped by the
// request's X-Answer header: "204", "304", "big" (a 5 MB chunked body),
// "cookies" (two Set-Cookie lines, no Content-Type).
func Echo(t *testing.T) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := r.Header.Clone()
		h.Del("Accept-Encoding") // net/http's transport asks for gzip on its own
		s := Seen{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: h, ContentLength: r.ContentLength,
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

// Answer is what a client of the proxy saw.
type Answer struct {
	Status  int
	Header  http.Header
	Body    string
	Trailer http.Header
}

// Call sends the request req builds and reads the whole answer (Date left out).
func Call(t *testing.T, c *http.Client, req func() *http.Request) Answer {
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
	return Answer{Status: res.StatusCode, Header: h, Body: string(b), Trailer: res.Trailer}
}

// Mk returns a request builder: method and path against a base URL, a
// body (none if empty) and header lines as name, value pairs, added in
// order so a name may repeat.
func Mk(method, path, body string, kv ...string) func(base string) *http.Request {
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

// Case is a request to pass through a proxy.
type Case struct {
	Name string
	Req  func(base string) *http.Request
}

// Cases are requests of each kind a reverse proxy must pass on unchanged:
// repeated and odd headers, escaped paths, bodies of every framing,
// answers without a body, streamed and with large headers.
func Cases() []Case {
	big := strings.Repeat("x", 70000)
	return []Case{
		{"keyed POST", Mk("POST", "/charge/a%2Fb?x=1&y=%20z", `{"amount":100}`,
			"Idempotency-Key", `"k1"`, "Content-Type", "application/json", "X-Multi", "a", "X-Multi", "b",
			"Cookie", "sid=abc; theme=dark; flag; q=a=b; e=", "Cookie", "second=line", "User-Agent", "client/1.0")},
		{"expect 100-continue", Mk("POST", "/charge", `{"amount":5}`, "Expect", "100-continue", "Idempotency-Key", `"k2"`)},
		{"GET without user agent", Mk("GET", "/items?page=2", "", "User-Agent", "")},
		{"large body", Mk("PUT", "/blob", big)},
		{"chunked body", func(base string) *http.Request {
			pr, pw := io.Pipe()
			go func() { pw.Write([]byte("part one, ")); pw.Write([]byte("part two")); pw.Close() }()
			r, _ := http.NewRequest("POST", base+"/stream", pr)
			return r
		}},
		{"204", Mk("DELETE", "/x", "", "X-Answer", "204")},
		{"304", Mk("GET", "/x", "", "X-Answer", "304", "If-None-Match", `"v1"`)},
		{"HEAD", Mk("HEAD", "/x", "")},
		{"set-cookie, no content type", Mk("POST", "/x", "b", "X-Answer", "cookies")},
		{"40 KB request header", Mk("POST", "/x", "b", "X-Big-Request", strings.Repeat("r", 40<<10))},
		{"103 early hints first", Mk("POST", "/x", "b", "X-Answer", "early-hints")},
		{"trailers asked for", Mk("GET", "/x", "", "X-Answer", "trailer", "Te", "trailers")},
		{"40 KB answer header", Mk("GET", "/x", "", "X-Answer", "big-header")},
		{"5 MB streamed answer", Mk("GET", "/x", "", "X-Answer", "big")},
	}
}

// Server is a front end that serves on a listener until shut down.
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// Start serves s on a free local port until the test ends and returns
// its base URL.
func Start(t testing.TB, s Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}
