// Package front holds idem serve's two front ends: Server, an HTTP/1.1
// server on fasthttp that applies httpidem's guard and forwards to the
// upstream with internal/upstream's fasthttp client, the request and the
// answer each read and written on the connection's own goroutine; and
// Handler, httpidem's middleware in front of httputil.ReverseProxy for
// net/http's server.
//
// Why not net/http's server and httputil.ReverseProxy, which idem serve
// used before: on the 2-core bench machine, at 2,000 requests a second,
// forwarding alone (bench/proxycost.sh) took 271-282 µs of CPU a request
// that way, 233-238 with a plain net/http handler instead of the reverse
// proxy, and 148-162 µs with a fasthttp server; its p99 was 6.3-8.8,
// 5.1-5.2 and 2.9-3.9 ms. The proxy shares those cores with its key
// store, its upstream and the load.
//
// What fasthttp does not do the way net/http does goes to net/http: a
// connection whose request asks for a protocol upgrade (WebSocket), for
// trailers ("TE: trailers") or is a CONNECT is handed, with that request,
// to an http.Server running Handler, which serves it from then on.
package front

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/idemhq/idem/httpidem"
	"github.com/idemhq/idem/internal/upstream"
	"github.com/valyala/fasthttp"
)

// Options configure a Server; all but Logger are required.
type Options struct {
	Guard *httpidem.Middleware
	// Upstream is the base URL requests are forwarded to: its scheme and
	// host, and a path and query that prefix the request's, as
	// httputil.ProxyRequest.SetURL joins them.
	Upstream *url.URL
	// Transport is the client to the upstream.
	Transport *upstream.Transport
	Logger    *slog.Logger
}

func (o *Options) check() error {
	if o.Guard == nil || o.Upstream == nil || o.Transport == nil {
		return errors.New("front: Guard, Upstream and Transport are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Handler is the net/http front end: the guard in front of
// httputil.ReverseProxy on o.Transport.
func Handler(o Options) (http.Handler, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	up := o.Upstream
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.SetXForwarded()
			// The middleware has buffered a keyed request's body. Handing
			// net/http's transport (upstream's fallback) that buffer,
			// instead of the proxy's wrapper around it, lets it send
			// headers and body in one write: it flushes the headers first
			// for a body it cannot see is in memory. The fast path takes
			// the buffer from GetBody itself.
			if pr.In.GetBody != nil && pr.Out.ContentLength > 0 {
				if b, err := pr.In.GetBody(); err == nil {
					pr.Out.Body = b
				}
			}
		},
		Transport:  o.Transport,
		BufferPool: &bufPool{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			o.Logger.Warn("upstream gave no answer", "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return o.Guard.Wrap(proxy), nil
}

// bufPool reuses the proxy's copy buffers: allocating and zeroing 32 KiB
// per request was a tenth of the proxy's CPU.
type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufPool) Put(buf []byte) { b.p.Put(&buf) }

// Server is the front end. Serve it on a listener; Shutdown stops it.
type Server struct {
	o     Options
	fast  *fasthttp.Server
	std   *http.Server
	conns *connListener
	// handing counts connections handed over that net/http has not yet
	// started serving (its ConnState reports them): fasthttp runs the
	// hand-over after its handler returns, so its Shutdown does not wait
	// for them, and net/http's Shutdown does not know of a connection it
	// has accepted but not yet tracked.
	handing sync.WaitGroup
	// beforePush, when set (tests), runs just before a hand-over's push.
	beforePush func()
	// origin is "scheme://host" of the upstream; prefix is true when its
	// path or query must be joined with each request's.
	origin string
	prefix bool
}

// New checks o and builds the server.
func New(o Options) (*Server, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	std, err := Handler(o)
	if err != nil {
		return nil, err
	}
	s := &Server{
		o:      o,
		origin: o.Upstream.Scheme + "://" + o.Upstream.Host,
		prefix: (o.Upstream.Path != "" && o.Upstream.Path != "/") || o.Upstream.RawQuery != "",
		conns:  newConnListener(),
	}
	s.fast = &fasthttp.Server{
		Handler: s.handle,
		// Answers go out as the upstream gave them: no Server or
		// Content-Type of ours. Every answer gets the proxy's Date, its
		// own answers (replays, problems) included, which an upstream's
		// replaces.
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		// Request headers up to 64 KiB (fasthttp's default is 4 KiB; net/http
		// takes 1 MB, nginx 8 KB a line).
		ReadBufferSize: 64 << 10,
		// Bodies stream: fasthttp reads up to 8 KiB (prefetch) before the
		// handler runs, the rest of an unkeyed body flows to the upstream
		// as it arrives (an upload of any size), and a keyed one is read
		// up to the guard's limit.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		// As the net/http server had: the headers within 10 s of the
		// first byte. A body that streams past that gets more time in
		// the handler.
		ReadTimeout: 10 * time.Second,
		IdleTimeout: 2 * time.Minute,
		// A hijacked connection goes on in net/http: it must stay open.
		KeepHijackedConns: true,
		CloseOnShutdown:   true,
		Logger:            logger{o.Logger},
	}
	s.std = &http.Server{Handler: std, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ConnState: func(c net.Conn, st http.ConnState) {
			if pc, ok := c.(*prefixConn); ok && st != http.StateNew {
				pc.served.Do(s.handing.Done)
			}
		}}
	return s, nil
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	go s.std.Serve(s.conns) // returns when Shutdown closes s.conns
	return s.fast.Serve(patientListener{ln, s.o.Logger})
}

// patientListener waits and accepts again after an error that passes
// (out of file descriptors in a burst of connections, one reset before
// it was accepted), as net/http's server does. fasthttp's Serve returns
// on any error but a timeout, which took the whole proxy down, cutting
// off the requests in flight and leaving their keys held until their
// leases ended.
type patientListener struct {
	net.Listener
	log *slog.Logger
}

func (l patientListener) Accept() (net.Conn, error) {
	wait := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil || !passing(err) {
			return c, err
		}
		l.log.Warn("accept failed; retrying", "err", err, "in", wait)
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}

func passing(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Shutdown stops accepting connections and waits, up to ctx's end, for
// the requests in flight on both servers.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.fast.ShutdownWithContext(ctx)
	// A request fasthttp just handed over must be in net/http's hands
	// (served, so its Shutdown waits for it) before that stops, or its
	// connection is closed unanswered. (fasthttp skips a hand-over only on
	// a connection that already failed; the wait then ends with ctx.)
	started := make(chan struct{})
	go func() { s.handing.Wait(); close(started) }()
	select {
	case <-started:
	case <-ctx.Done():
	}
	if err2 := s.std.Shutdown(ctx); err == nil {
		err = err2
	}
	return err
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	defer func() {
		// fasthttp, unlike net/http, lets a panic end the process, and
		// with it every request in flight.
		if r := recover(); r != nil {
			s.o.Logger.Error("request handler panicked", "panic", r)
			ctx.Response.Reset()
			ctx.SetStatusCode(http.StatusInternalServerError)
			ctx.SetConnectionClose()
		}
	}()
	out := s.serve(ctx)
	if out != "" {
		s.o.Guard.Observe(out, time.Since(start))
	}
}

// serve answers one request; it returns the outcome, or "" for a
// connection handed to net/http, which reports its requests itself.
func (s *Server) serve(ctx *fasthttp.RequestCtx) httpidem.Outcome {
	req := &ctx.Request
	if toStd(req) {
		s.handOver(ctx)
		return ""
	}
	method := string(req.Header.Method())
	key, ans, out := s.o.Guard.Check(method, lines(req.Header.PeekAll("Idempotency-Key")))
	switch {
	case out == httpidem.Unkeyed:
		s.forward(ctx)
		return out
	case ans != nil:
		answer(ctx, ans)
		return out
	}
	u, err := url.ParseRequestURI(string(req.Header.RequestURI()))
	if err != nil {
		ctx.Error("request target is not a URI", http.StatusBadRequest)
		return httpidem.Rejected
	}
	body, err := s.readBody(ctx)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			answer(ctx, s.o.Guard.TooLarge())
		} else {
			answer(ctx, s.o.Guard.Unreadable(err))
		}
		// The rest of the body is not read: the connection cannot carry
		// another request.
		ctx.SetConnectionClose()
		return httpidem.Rejected
	}
	var scope string
	if h := s.o.Guard.ScopeHeader(); h != "" {
		scope = strings.Join(lines(req.Header.PeekAll(h)), "\n")
	}
	claim, ans, out := s.o.Guard.Begin(context.Background(), httpidem.Request{Method: method,
		Path: u.EscapedPath(), RawQuery: u.RawQuery, Scope: scope, Key: key, Body: body})
	if ans != nil {
		answer(ctx, ans)
		return out
	}
	finished := false
	defer func() {
		if !finished { // a panic below: no answer was given
			claim.Abandon()
		}
	}()
	req.SetBodyRaw(body)
	if !s.send(ctx, u) {
		finished = true
		claim.Abandon()
		return out
	}
	resp := &ctx.Response
	// The whole answer, to store it; a read that fails midway is an
	// upstream that gave no complete answer.
	b, err := readAll(resp)
	if err != nil {
		finished = true
		claim.Abandon()
		s.o.Logger.Warn("upstream answer cut short", "err", err)
		badGateway(ctx)
		return out
	}
	resp.SetBodyRaw(b)
	finished = true
	claim.Finish(resp.StatusCode(), header(resp), b)
	return out
}

var errTooLarge = errors.New("body over the limit")

// prefetch is how much of a body fasthttp reads before the handler runs
// (at most 8 KiB, whatever MaxRequestBodySize says); the rest streams.
const prefetch = 8 << 10

// readBody reads a keyed request's body, up to the guard's limit.
func (s *Server) readBody(ctx *fasthttp.RequestCtx) ([]byte, error) {
	limit := s.o.Guard.MaxRequestBytes()
	if n := ctx.Request.Header.ContentLength(); n > int(limit) {
		return nil, errTooLarge
	}
	r := ctx.RequestBodyStream()
	if r == nil {
		return append([]byte(nil), ctx.Request.Body()...), nil
	}
	s.streaming(ctx)
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

// streaming lifts the read deadline for a body still coming: the 10 s
// were for the headers.
func (s *Server) streaming(ctx *fasthttp.RequestCtx) {
	if n := ctx.Request.Header.ContentLength(); n != -1 && n <= prefetch {
		return // no body, or one read before the handler ran
	}
	ctx.Conn().SetReadDeadline(time.Time{})
}

// forward sends an unkeyed request on as it came; the answer, body
// included, streams back.
func (s *Server) forward(ctx *fasthttp.RequestCtx) {
	var u *url.URL
	if raw := ctx.Request.Header.RequestURI(); s.prefix || len(raw) == 0 || raw[0] != '/' {
		var err error
		if u, err = url.ParseRequestURI(string(raw)); err != nil {
			ctx.Error("request target is not a URI", http.StatusBadRequest)
			return
		}
	}
	s.streaming(ctx)
	s.send(ctx, u)
}

// send rewrites ctx.Request for the upstream, as httputil.ReverseProxy
// with SetURL and SetXForwarded does, sends it and leaves the answer in
// ctx.Response (its body a stream from the upstream connection). It
// answers 502 itself and returns false when the upstream gave no answer.
// u is the parsed request URI; it may be nil for an origin-form one
// ("/path?query") when the upstream URL has no path or query to join.
func (s *Server) send(ctx *fasthttp.RequestCtx, u *url.URL) bool {
	req := &ctx.Request
	if u == nil {
		// Byte for byte as it came (RequestURI() would be normalised).
		req.SetRequestURI(s.origin + string(req.Header.RequestURI()))
	} else {
		req.SetRequestURI(s.origin + s.join(u))
	}
	clientIP := ctx.RemoteIP().String()
	inHost := string(req.Header.Host())
	clientClose := req.Header.ConnectionClose()
	dropHop(&req.Header)
	// The client's X-Forwarded-* are not trusted (ReverseProxy's Rewrite
	// drops them too): ours describe the one hop we saw.
	req.Header.Del("X-Forwarded-For")
	req.Header.Del("X-Forwarded-Host")
	req.Header.Del("X-Forwarded-Proto")
	req.Header.Set("X-Forwarded-For", clientIP)
	req.Header.Set("X-Forwarded-Host", inHost)
	req.Header.Set("X-Forwarded-Proto", "http")
	req.Header.SetHost(s.o.Upstream.Host)
	// HTTP/1.1 to the upstream whatever the client spoke, as
	// ReverseProxy sends: an HTTP/1.0 request would cost the upstream
	// connection its keep-alive.
	req.Header.SetProtocol("HTTP/1.1")
	req.Header.SetNoDefaultContentType(true)
	// The client's wish to close its connection is the server's to honour
	// (it noted it before this ran); the upstream connection stays open.
	req.Header.ResetConnectionClose()
	// The body is here already (or coming as a stream, for the upstream
	// to read as it arrives): the upstream need not be asked first.
	req.Header.Del("Expect")
	// Only a request without a body, or with one in memory (a keyed
	// one), can be sent again if the upstream closed a connection as it
	// was reused; net/http's Transport has the same rule for a proxied
	// request.
	replayable := !req.IsBodyStream() || req.Header.ContentLength() == 0
	if err := s.o.Transport.Do(req, &ctx.Response, replayable); err != nil {
		s.o.Logger.Warn("upstream gave no answer", "err", err)
		badGateway(ctx)
		return false
	}
	resp := &ctx.Response
	// The upstream closing its connection is no reason to close the
	// client's.
	resp.Header.ResetConnectionClose()
	dropHop(&resp.Header)
	if clientClose && resp.IsBodyStream() {
		// The server marks this answer "Connection: close" before it
		// streams the body, and the client then closes the upstream
		// connection the body came on too. A small body is read now,
		// which hands the connection back first.
		if n := resp.Header.ContentLength(); n >= 0 && n <= 64<<10 {
			b, err := readAll(resp)
			if err != nil {
				// Cut short: nothing has gone to the client yet, and the
				// stream is closed, so what was read must not be passed
				// on (or stored) as the whole answer.
				s.o.Logger.Warn("upstream answer cut short", "err", err)
				badGateway(ctx)
				return false
			}
			resp.SetBodyRaw(b)
		}
	}
	return true
}

// join is the request's path and query under the upstream URL's, as
// httputil.ProxyRequest.SetURL joins them.
func (s *Server) join(u *url.URL) string {
	base := s.o.Upstream
	var path string
	if base.RawPath == "" && u.RawPath == "" {
		path = (&url.URL{Path: singleSlash(base.Path, u.Path)}).EscapedPath()
	} else {
		path = singleSlash(base.EscapedPath(), u.EscapedPath())
	}
	q := base.RawQuery
	switch {
	case q == "":
		q = u.RawQuery
	case u.RawQuery != "":
		q += "&" + u.RawQuery
	}
	if q != "" {
		return path + "?" + q
	}
	return path
}

func singleSlash(a, b string) string {
	as, bs := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case as && bs:
		return a + b[1:]
	case !as && !bs:
		return a + "/" + b
	}
	return a + b
}

// Hop-by-hop fields (RFC 9110 §7.6.1), which describe one connection and
// are not forwarded; fasthttp itself frames the body (Content-Length,
// Transfer-Encoding) on each side.
var hopFields = []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

// fields is a request's or an answer's header.
type fields interface {
	Peek(key string) []byte
	Del(key string)
}

func dropHop(h fields) {
	for _, f := range connectionTokens(h.Peek("Connection")) {
		h.Del(f)
	}
	h.Del("Connection")
	for _, f := range hopFields {
		h.Del(f)
	}
}

// connectionTokens are the fields a Connection field names, besides its
// close and keep-alive options.
func connectionTokens(v []byte) []string {
	var out []string
	for _, t := range strings.Split(string(v), ",") {
		t = strings.TrimSpace(t)
		if t != "" && !strings.EqualFold(t, "close") && !strings.EqualFold(t, "keep-alive") {
			out = append(out, t)
		}
	}
	return out
}

// toStd says whether a request goes to net/http: an upgrade (fasthttp
// would have to tunnel the connection), CONNECT, or one that asks for
// trailers, which a streamed answer here cannot pass on.
func toStd(req *fasthttp.Request) bool {
	return len(req.Header.Peek("Upgrade")) > 0 || req.Header.IsConnect() ||
		strings.Contains(strings.ToLower(string(req.Header.Peek("Te"))), "trailers")
}

// handOver gives the connection, this request first, to net/http.
func (s *Server) handOver(ctx *fasthttp.RequestCtx) {
	// The request goes in front of what follows it on the connection. A
	// body fasthttp has (partly) read goes in front of the connection,
	// whole and with its length: its framing was fasthttp's to undo.
	var body []byte
	if r := ctx.RequestBodyStream(); r != nil {
		limit := s.o.Guard.MaxRequestBytes()
		s.streaming(ctx)
		b, err := io.ReadAll(io.LimitReader(r, limit+1))
		switch {
		case err != nil:
			ctx.Error("request body could not be read", http.StatusBadRequest)
			ctx.SetConnectionClose()
			return
		case int64(len(b)) > limit:
			answer(ctx, s.o.Guard.TooLarge())
			ctx.SetConnectionClose()
			return
		}
		body = b
		ctx.Request.Header.SetContentLength(len(b))
	} else {
		body = ctx.Request.Body()
	}
	var head bytes.Buffer
	w := bufio.NewWriter(&head)
	ctx.Request.Header.Write(w)
	w.Write(body)
	w.Flush()
	ctx.HijackSetNoResponse(true)
	s.handing.Add(1)
	ctx.Hijack(func(c net.Conn) {
		if s.beforePush != nil {
			s.beforePush()
		}
		pc := &prefixConn{Conn: c, r: io.MultiReader(&head, c)}
		if !s.conns.push(pc) {
			pc.served.Do(s.handing.Done)
		}
	})
}

// badGateway is the answer when the upstream gave none.
func badGateway(ctx *fasthttp.RequestCtx) {
	ctx.Response.Reset()
	ctx.Response.Header.SetNoDefaultContentType(true)
	ctx.SetStatusCode(http.StatusBadGateway)
}

// answer sends the guard's own answer.
func answer(ctx *fasthttp.RequestCtx, a *httpidem.Answer) {
	resp := &ctx.Response
	for k, vs := range a.Header {
		if k == "Content-Length" {
			continue // set from the body
		}
		for _, v := range vs {
			resp.Header.Add(k, v)
		}
	}
	resp.SetStatusCode(a.Status)
	resp.SetBodyRaw(a.Body)
}

// header is the answer's header as net/http would have it, to store.
func header(resp *fasthttp.Response) http.Header {
	h := make(http.Header, 8)
	for k, v := range resp.Header.All() {
		key := http.CanonicalHeaderKey(string(k))
		h[key] = append(h[key], string(v))
	}
	return h
}

func readAll(resp *fasthttp.Response) ([]byte, error) {
	r := resp.BodyStream()
	if r == nil {
		return resp.Body(), nil
	}
	b, err := io.ReadAll(r)
	if cerr := resp.CloseBodyStream(); err == nil {
		err = cerr
	}
	return b, err
}

func lines(v [][]byte) []string {
	if len(v) == 0 {
		return nil
	}
	out := make([]string, len(v))
	for i, b := range v {
		out[i] = string(b)
	}
	return out
}

// prefixConn is a connection whose first bytes are a request already read.
type prefixConn struct {
	net.Conn
	r io.Reader
	// served ends the connection's count in Server.handing, once.
	served sync.Once
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connListener hands connections to http.Server.Serve.
type connListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// push reports whether Serve took c; if not (closed), c is closed.
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{} }

// logger sends fasthttp's messages (connection errors) to slog at debug.
type logger struct{ l *slog.Logger }

func (l logger) Printf(format string, args ...any) {
	l.l.Debug("fasthttp", "msg", strings.TrimSpace(fmt.Sprintf(format, args...)))
}
