// Package upstream is the HTTP client `idem serve` forwards with: an
// http.RoundTripper for one upstream origin that sends ordinary HTTP/1.1
// requests with a fasthttp HostClient, and the rest (protocol upgrades,
// an origin reached through an HTTP proxy from the environment) with
// net/http's Transport.
//
// Why not net/http's Transport alone: it runs every request on three
// goroutines (the caller, the connection's writer and its reader), and
// each hand-off between them is a wake-up the scheduler pays for. A
// HostClient writes the request and reads the response on the caller's
// goroutine. Through httputil.ReverseProxy alone at 2,000 requests a
// second on the 2-core bench machine (bash bench/proxycost.sh, 2 rounds)
// that was 196-201 against 240-248 µs of CPU a request, p99 3.1-3.9
// against 4.1-4.7 ms.
package upstream

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Transport forwards to one origin. Build it with New.
type Transport struct {
	origin   *url.URL
	fast     *fasthttp.HostClient
	fallback http.RoundTripper
	viaProxy bool
}

// Options tune the connection pool; zero values take the defaults.
type Options struct {
	// MaxConns bounds the connections to the origin (default 1024): past
	// it, requests wait for one (up to ConnWait), so a burst cannot
	// exhaust descriptors or the upstream.
	MaxConns int
	// ConnWait bounds that wait (default 1m); a request that waits longer
	// fails as one the upstream did not answer.
	ConnWait time.Duration
	// IdleTimeout closes a connection unused this long (default 4s: below
	// the keep-alive timeouts of common servers, Node's 5s the shortest,
	// so that we, not the server, close idle connections; a request sent
	// on a connection the server has just closed fails).
	IdleTimeout time.Duration
	// DialTimeout bounds opening a connection (default 30s, as net/http's).
	DialTimeout time.Duration
	// TLS configures an https:// origin's connections (default: the
	// system's roots, the server name from the URL).
	TLS *tls.Config
	// Fallback serves what the fast path does not (default: a clone of
	// net/http's DefaultTransport with the same connection limit and TLS).
	Fallback http.RoundTripper
}

// New returns a Transport for the origin of base (scheme and host; path and
// query are ignored).
func New(base *url.URL, o Options) (*Transport, error) {
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, errors.New("upstream: need an http:// or https:// URL with a host")
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 1024
	}
	if o.ConnWait <= 0 {
		o.ConnWait = time.Minute
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 4 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 30 * time.Second
	}
	if o.Fallback == nil {
		std := http.DefaultTransport.(*http.Transport).Clone()
		// Keep connections to the one upstream (the default of 2 idle
		// ones would make every burst open and close connections), and
		// bound them as the fast path does.
		std.MaxIdleConns, std.MaxIdleConnsPerHost, std.MaxConnsPerHost = o.MaxConns, o.MaxConns, o.MaxConns
		if o.TLS != nil {
			std.TLSClientConfig = o.TLS
		}
		o.Fallback = std
	}
	isTLS := base.Scheme == "https"
	origin := &url.URL{Scheme: base.Scheme, Host: base.Host}
	dialer := &fasthttp.TCPDialer{}
	t := &Transport{
		origin:   origin,
		fallback: o.Fallback,
		fast: &fasthttp.HostClient{
			Addr:      fasthttp.AddMissingPort(base.Host, isTLS),
			IsTLS:     isTLS,
			TLSConfig: o.TLS,
			MaxConns:  o.MaxConns,
			// An answer's headers must fit in the read buffer. fasthttp's
			// default of 4 KiB refuses headers that net/http (10 MB) and
			// nginx (8 KB by default) pass; 64 KiB is taken from a pool
			// per request in flight, not held per connection.
			ReadBufferSize:      64 << 10,
			MaxConnWaitTimeout:  o.ConnWait,
			MaxIdleConnDuration: o.IdleTimeout,
			// Requests are forwarded as they came: no User-Agent of ours,
			// header names and paths byte for byte.
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			// Large answers (downloads through the proxy) flow through
			// instead of being held whole in memory.
			StreamResponseBody: true,
			// Retries are ours to decide (retry below), never the
			// client's: a POST sent twice is what this proxy prevents.
			MaxIdemponentCallAttempts: 1,
			Dial: func(addr string) (net.Conn, error) {
				return dialer.DialTimeout(addr, o.DialTimeout)
			},
		},
	}
	// An origin that net/http would reach through HTTP_PROXY/HTTPS_PROXY
	// keeps going through it.
	probe := &http.Request{URL: origin, Header: http.Header{}}
	if p, err := http.ProxyFromEnvironment(probe); err == nil && p != nil {
		t.viaProxy = true
	}
	return t, nil
}

// CloseIdleConnections closes the idle connections of both paths.
func (t *Transport) CloseIdleConnections() {
	t.fast.CloseIdleConnections()
	if c, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	// fasthttp would join several Cookie lines into one (as RFC 6265 has
	// clients send them); such a rare request goes out as it came. The
	// answer's headers are handed on before its body is read, so trailers
	// (fields after the body) could not follow: a client that says it
	// wants them ("TE: trailers") goes through net/http, which passes
	// them on; others do not get them, which HTTP/1.1 allows.
	if t.viaProxy || r.URL.Scheme != t.origin.Scheme || r.URL.Host != t.origin.Host ||
		r.Header.Get("Upgrade") != "" || r.Method == http.MethodConnect || len(r.Header["Cookie"]) > 1 ||
		r.Header.Get("Te") == "trailers" {
		return t.fallback.RoundTrip(r)
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	resp.Header.SetNoDefaultContentType(true)
	for try := 0; ; try++ {
		// Built again for a retry: the first try spent the body's reader.
		req.Reset()
		err := t.build(req, r)
		if err == nil {
			err = t.do(req, resp, r)
		}
		if err == nil {
			return convert(resp, r), nil
		}
		if try > 0 || !retry(r, err) {
			fasthttp.ReleaseResponse(resp)
			return nil, err
		}
	}
}

// Do sends req, whose URI names the origin, on the fast path and reads
// the answer into resp; its body streams from the connection until resp
// is released or its stream closed. A request that meets a connection the
// upstream has just closed is sent once more when it may be replayed by
// its method or key (as RoundTrip decides) and bodyInMemory says its body
// can be sent again.
func (t *Transport) Do(req *fasthttp.Request, resp *fasthttp.Response, bodyInMemory bool) error {
	err := t.fast.Do(req, resp)
	if err != nil && bodyInMemory && closedConn(err) && replayable(string(req.Header.Method()),
		len(req.Header.Peek("Idempotency-Key")) > 0 || len(req.Header.Peek("X-Idempotency-Key")) > 0) {
		err = t.fast.Do(req, resp)
	}
	return err
}

func (t *Transport) do(req *fasthttp.Request, resp *fasthttp.Response, r *http.Request) error {
	if d, ok := r.Context().Deadline(); ok {
		return t.fast.DoDeadline(req, resp, d)
	}
	return t.fast.Do(req, resp)
}

// retry says whether a request that failed may be sent again, once,
// much as net/http's Transport decides: only when the server closed the
// connection before answering (most likely an idle one it closed as we
// reused it), and only a request that may be replayed, by its method or
// because it carries an Idempotency-Key the upstream can deduplicate on.
// Its body must be in memory (a stream is spent). net/http also asks that
// the connection was a reused one, which fasthttp does not tell; for a
// keyed request that makes no difference to the upstream, since a
// request that got no answer releases its key and the client's own retry
// would send it again.
func retry(r *http.Request, err error) bool {
	if !closedConn(err) {
		return false
	}
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return replayable(r.Method, a || b)
}

// closedConn is an error of a request the server closed the connection on
// before answering.
func closedConn(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF)
}

// replayable: a method the upstream must treat as idempotent, or a
// request it can deduplicate by its key.
func replayable(method string, keyed bool) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return keyed
}

// ViaProxy says whether the origin is reached through an HTTP proxy from
// the environment, which only the net/http path does.
func (t *Transport) ViaProxy() bool { return t.viaProxy }

// build copies r into req. The body is handed over as a stream with its
// length, so a buffered body is written with the headers in one write
// and an unbuffered one flows through.
func (t *Transport) build(req *fasthttp.Request, r *http.Request) error {
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(r.Method)
	req.SetRequestURI(t.origin.Scheme + "://" + t.origin.Host + r.URL.RequestURI())
	if r.Host != "" {
		req.Header.SetHost(r.Host)
	}
	for k, vs := range r.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue // set from the request's fields, or hop-by-hop
		}
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if r.Close {
		req.SetConnectionClose()
	}
	body := r.Body
	if r.GetBody != nil && r.ContentLength > 0 {
		// A body already in memory, given as a fresh reader so a retry
		// can send it again.
		b, err := r.GetBody()
		if err != nil {
			return err
		}
		body = b
	}
	switch {
	case body == nil || body == http.NoBody:
	case r.ContentLength > 0:
		req.SetBodyStream(body, int(r.ContentLength))
	default: // unknown length: sent chunked, as net/http would
		req.SetBodyStream(body, -1)
	}
	return nil
}

// convert turns resp into the http.Response the reverse proxy expects. The
// body streams from the connection; closing it returns the connection to
// the pool and resp to fasthttp's.
func convert(resp *fasthttp.Response, r *http.Request) *http.Response {
	code := resp.StatusCode()
	res := &http.Response{
		StatusCode: code,
		Status:     strconv.Itoa(code) + " " + statusText(resp, code),
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        make(http.Header, 8),
		ContentLength: int64(resp.Header.ContentLength()),
		Request:       r,
	}
	for k, v := range resp.Header.All() {
		key := http.CanonicalHeaderKey(string(k))
		if key == "Transfer-Encoding" {
			continue
		}
		res.Header[key] = append(res.Header[key], string(v))
	}
	if res.ContentLength < 0 {
		res.ContentLength = -1 // chunked or until close
	}
	if s := resp.BodyStream(); s != nil {
		res.Body = &body{resp: resp, r: s}
	} else {
		res.Body = http.NoBody
		if r.Method != http.MethodHead && len(resp.Body()) > 0 {
			res.Body = io.NopCloser(strings.NewReader(string(resp.Body())))
		}
		fasthttp.ReleaseResponse(resp)
	}
	return res
}

func statusText(resp *fasthttp.Response, code int) string {
	if m := resp.Header.StatusMessage(); len(m) > 0 {
		return string(m)
	}
	return http.StatusText(code)
}

// body is a streamed response body; Close releases what it holds.
type body struct {
	resp   *fasthttp.Response
	r      io.Reader
	closed bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("upstream: read on a closed body")
	}
	return b.r.Read(p)
}

func (b *body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(b.resp)
	return err
}
