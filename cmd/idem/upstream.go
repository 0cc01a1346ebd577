package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// upstreamTransport sends requests whose body is already in memory (every
// keyed request: the middleware buffers it for the fingerprint) to a plain
// http:// upstream over keep-alive connections of its own, writing the
// request and reading the response in the calling goroutine. Everything
// else (https, streamed bodies, upgrades, Expect: 100-continue) goes to
// next, an http.Transport.
//
// Why: http.Transport gives each connection a reader and a writer
// goroutine, and a request passes through both: the handler hands it to
// the writer, the reader hands the response back, then waits for the body
// to be read before it peeks for the next response. On two cores shared
// with the upstream, the store and the clients, each of those hand-offs is
// a thread wake-up that can wait for a time slice, and together they were
// about a fifth of the proxy's CPU. Here a request costs one write and one
// read on the connection and no hand-off at all.
type upstreamTransport struct {
	host        string // the upstream URL's host, as requests carry it
	addr        string // host:port to dial
	next        http.RoundTripper
	dialer      net.Dialer
	maxConns    int
	maxIdle     int
	idleTimeout time.Duration

	mu      sync.Mutex
	idle    []*upConn // a stack: the most recently used is reused first
	open    int       // connections dialled and not yet closed
	waiters []chan *upConn
	resent  atomic.Int64 // requests sent again after a connection turned out closed, for tests
}

type upConn struct {
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	n        *countingConn
	idleFrom time.Time
	reused   bool
}

// countingConn counts the bytes read, so a failed exchange can tell "the
// upstream sent nothing" (a connection it had closed) from a broken answer.
type countingConn struct {
	net.Conn
	read int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	return n, err
}

func newUpstreamTransport(host string, next http.RoundTripper, maxConns int) *upstreamTransport {
	addr := host
	if _, _, err := net.SplitHostPort(host); err != nil {
		addr = net.JoinHostPort(strings.Trim(host, "[]"), "80")
	}
	return &upstreamTransport{
		host: host, addr: addr, next: next, maxConns: maxConns, maxIdle: maxConns, idleTimeout: 90 * time.Second,
		dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
	}
}

// direct reports whether req can take the direct path.
func (t *upstreamTransport) direct(req *http.Request) bool {
	if req.URL.Scheme != "http" || req.URL.Host != t.host || req.Method == http.MethodConnect {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false // a streamed body: it cannot be sent again after a stale connection
	}
	if req.ContentLength < 0 || (req.ContentLength > 0 && req.GetBody == nil) {
		return false
	}
	h := req.Header
	return h.Get("Upgrade") == "" && h.Get("Expect") == "" && len(req.TransferEncoding) == 0 && req.Trailer == nil
}

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.direct(req) {
		return t.next.RoundTrip(req)
	}
	ctx := req.Context()
	for {
		pc, err := t.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(ctx, pc, req)
		if err == nil {
			return resp, nil
		}
		t.discard(pc)
		// A reused connection the upstream had already closed fails before
		// a single byte of answer arrives. http.Transport sends such a
		// request again when it is replayable (a body it can get again,
		// and an idempotent method or an Idempotency-Key header); so do we.
		if !pc.reused || pc.n.read != 0 || ctx.Err() != nil || !replayable(req) {
			return nil, err
		}
		t.resent.Add(1)
		if req.GetBody != nil {
			b, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			req.Body = b
		}
	}
}

// replayable follows http.Transport's rule for resending a request after a
// connection turned out closed.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

func (t *upstreamTransport) exchange(ctx context.Context, pc *upConn, req *http.Request) (*http.Response, error) {
	// A context that can end (an unkeyed client that hangs up) breaks off
	// the exchange by closing the connection's deadline.
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { pc.c.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	pc.n.read = 0
	if err := req.Write(pc.bw); err != nil {
		return nil, ctxErr(ctx, err)
	}
	if err := pc.bw.Flush(); err != nil {
		return nil, ctxErr(ctx, err)
	}
	for {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				resp.Body.Close()
				return nil, errors.New("upstream switched protocols on a request that did not ask to")
			}
			keep := !resp.Close && !req.Close
			resp.Body = &upBody{rc: resp.Body, t: t, pc: pc, keep: keep}
			return resp, nil
		}
		// 1xx interim answers (103 Early Hints, a stray 100): skip them.
		resp.Body.Close()
	}
}

func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// upBody hands the connection back once the body has been read to its
// end; a body closed before its end takes the connection with it.
type upBody struct {
	rc   io.ReadCloser
	t    *upstreamTransport
	pc   *upConn
	keep bool
	done bool
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *upBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

func (b *upBody) finish(complete bool) {
	b.done = true
	b.rc.Close()
	if complete && b.keep {
		b.t.put(b.pc)
	} else {
		b.t.discard(b.pc)
	}
}

// get returns an idle connection, or dials one, or waits for one when
// maxConns are open: a burst must not exhaust file descriptors or the
// upstream.
func (t *upstreamTransport) get(ctx context.Context) (*upConn, error) {
	t.mu.Lock()
	now := time.Now()
	for len(t.idle) > 0 {
		pc := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		idle := now.Sub(pc.idleFrom)
		if idle < t.idleTimeout {
			t.mu.Unlock()
			// Under load a connection comes back within a millisecond;
			// one that sat idle longer may have been closed by the
			// upstream meanwhile (keep-alive timeouts), so look first.
			if idle < 100*time.Millisecond || !peerClosed(pc.c) {
				pc.reused = true
				return pc, nil
			}
			pc.c.Close()
			t.mu.Lock()
			t.open--
			continue
		}
		t.open--
		pc.c.Close()
	}
	if t.open < t.maxConns {
		t.open++
		t.mu.Unlock()
		return t.dial(ctx)
	}
	w := make(chan *upConn, 1)
	t.waiters = append(t.waiters, w)
	t.mu.Unlock()
	select {
	case pc := <-w:
		if pc == nil {
			return t.dial(ctx) // a slot, not a connection
		}
		pc.reused = true
		return pc, nil
	case <-ctx.Done():
		t.mu.Lock()
		for i, x := range t.waiters {
			if x == w {
				t.waiters = append(t.waiters[:i], t.waiters[i+1:]...)
				t.mu.Unlock()
				return nil, ctx.Err()
			}
		}
		t.mu.Unlock()
		// Handed something just now: give it back.
		if pc := <-w; pc != nil {
			t.put(pc)
		} else {
			t.release()
		}
		return nil, ctx.Err()
	}
}

func (t *upstreamTransport) dial(ctx context.Context) (*upConn, error) {
	c, err := t.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		t.release()
		return nil, err
	}
	n := &countingConn{Conn: c}
	return &upConn{c: c, n: n, br: bufio.NewReaderSize(n, 4<<10), bw: bufio.NewWriterSize(c, 4<<10)}, nil
}

// put makes pc idle, or hands it to a waiter.
func (t *upstreamTransport) put(pc *upConn) {
	pc.c.SetDeadline(time.Time{})
	t.mu.Lock()
	if len(t.waiters) > 0 {
		w := t.waiters[0]
		t.waiters = t.waiters[1:]
		t.mu.Unlock()
		w <- pc
		return
	}
	if len(t.idle) >= t.maxIdle {
		t.open--
		t.mu.Unlock()
		pc.c.Close()
		return
	}
	pc.idleFrom = time.Now()
	t.idle = append(t.idle, pc)
	t.mu.Unlock()
}

// discard closes a connection whose state is unknown.
func (t *upstreamTransport) discard(pc *upConn) {
	pc.c.Close()
	t.release()
}

// release frees a connection slot, for a waiter to dial with.
func (t *upstreamTransport) release() {
	t.mu.Lock()
	if len(t.waiters) > 0 {
		w := t.waiters[0]
		t.waiters = t.waiters[1:]
		t.mu.Unlock()
		w <- nil
		return
	}
	t.open--
	t.mu.Unlock()
}

// CloseIdleConnections closes the idle connections of both paths.
func (t *upstreamTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.open -= len(idle)
	t.mu.Unlock()
	for _, pc := range idle {
		pc.c.Close()
	}
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
