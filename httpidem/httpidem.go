// Package httpidem is net/http middleware that makes non-idempotent
// requests (POST, PATCH) safe to retry, following
// draft-ietf-httpapi-idempotency-key-header and Stripe's conventions where
// the draft is silent. `idem serve` is this middleware in front of a
// reverse proxy.
//
// For a request with an Idempotency-Key header:
//
//   - the key is scoped by method, path and a hash of the scope header
//     (Authorization by default), so one client never sees another's response;
//   - the first request claims the key atomically in an idem.KeyStore, runs
//     the handler and stores its status, headers and body;
//   - a repeat with the same fingerprint (method, path, query, body) gets
//     the stored response with "Idempotent-Replayed: true", without running
//     the handler;
//   - a repeat while the first still runs gets 409 with Retry-After;
//   - the same key with another fingerprint gets 422;
//   - a missing key passes through (or 400 with RequireKey); a malformed
//     one or one over 255 characters gets 400;
//   - a 5xx or 429 answer is passed on but not stored: the claim is
//     released, so a retry runs the handler again;
//   - when the store cannot be reached the answer is 503 and the handler
//     is not called (fail closed: a store error is never "new request");
//   - a holder that died leaves a claim whose lease expires; the next retry
//     then runs the handler.
//
// Error answers are application/problem+json (RFC 9457).
package httpidem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/idemhq/idem"
)

// Outcome classifies each request, for metrics.
type Outcome string

const (
	Forwarded  Outcome = "forwarded"   // keyed request passed to the handler
	Replayed   Outcome = "replayed"    // stored response returned
	Conflict   Outcome = "conflict"    // 409: the key is in flight
	Mismatch   Outcome = "mismatch"    // 422: the key was used for another request
	Rejected   Outcome = "rejected"    // 400/413: missing, malformed or oversized key or body
	StoreError Outcome = "store_error" // 503: the store could not be reached
	Unkeyed    Outcome = "unkeyed"     // no key, or a method not covered: passed through untouched
)

// Options configure the middleware. Only Store is required.
type Options struct {
	Store idem.KeyStore
	// TTL keeps completed responses (default 24h); at least Lease.
	TTL time.Duration
	// Lease is how long a claim holds without a heartbeat; the middleware
	// renews it while the handler runs, so it only matters when the
	// process dies (default 30s).
	Lease time.Duration
	// Methods the middleware covers (default POST and PATCH).
	Methods []string
	// RequireKey answers 400 to a covered request without a key.
	RequireKey bool
	// BareKeys also accepts keys sent without quotes (ParseBareKey), as
	// Stripe-style clients send them; by default only the draft's quoted
	// Structured Field string is a key, and anything else gets 400.
	BareKeys bool
	// ScopeHeader's value (hashed) scopes keys per client (default
	// "Authorization"; "-" for none).
	ScopeHeader string
	// MaxRequestBytes bounds the request body read for the fingerprint
	// (default 10 MiB; larger bodies get 413).
	MaxRequestBytes int64
	// MaxResponseBytes bounds a stored response body (default 10 MiB). A
	// larger response is still returned once; its replays carry the status
	// and headers with an empty body and "Idempotent-Body-Omitted: true".
	MaxResponseBytes int64
	// StoreTimeout bounds each store call (default 5s).
	StoreTimeout time.Duration
	Logger       *slog.Logger
	// Observe, if set, is called once per request with its outcome and
	// how long the middleware and handler took.
	Observe func(Outcome, time.Duration)
}

// Middleware wraps handlers with idempotency-key handling.
type Middleware struct {
	o       Options
	methods map[string]bool
}

// New checks opts and fills in defaults.
func New(opts Options) (*Middleware, error) {
	if opts.Store == nil {
		return nil, errors.New("httpidem: Options.Store is required")
	}
	if opts.TTL <= 0 {
		opts.TTL = 24 * time.Hour
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	if opts.TTL < opts.Lease {
		// The record would expire while its request still holds the
		// lease, and an identical retry would run alongside it.
		return nil, fmt.Errorf("httpidem: Options.TTL (%v) is shorter than Options.Lease (%v)", opts.TTL, opts.Lease)
	}
	if len(opts.Methods) == 0 {
		opts.Methods = []string{http.MethodPost, http.MethodPatch}
	}
	if opts.ScopeHeader == "" {
		opts.ScopeHeader = "Authorization"
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 10 << 20
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 10 << 20
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Middleware{o: opts, methods: map[string]bool{}}
	for _, meth := range opts.Methods {
		m.methods[strings.ToUpper(strings.TrimSpace(meth))] = true
	}
	return m, nil
}

// Wrap returns next guarded by the middleware.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.Observe(m.serve(w, r, next), time.Since(start))
	})
}

func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) Outcome {
	key, ans, out := m.Check(r.Method, r.Header.Values("Idempotency-Key"))
	if out == Unkeyed {
		next.ServeHTTP(w, r)
		return Unkeyed
	}
	if ans != nil {
		ans.write(w)
		return out
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, m.o.MaxRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			m.TooLarge().write(w)
		} else {
			m.Unreadable(err).write(w)
		}
		return Rejected
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }

	var scope string
	if h := m.ScopeHeader(); h != "" {
		scope = strings.Join(r.Header.Values(h), "\n")
	}
	claim, ans, out := m.Begin(r.Context(), Request{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
		Scope: scope, Key: key, Body: body})
	if ans != nil {
		ans.write(w)
		return out
	}
	// The handler runs to its end even if the client hangs up: its answer
	// is then stored and the client's retry gets it, instead of a second
	// execution of a request whose outcome nobody saw.
	rec := &recorder{header: http.Header{}}
	finished := false
	defer func() {
		if !finished {
			// The handler panicked: its outcome is unknown to us, but it
			// gave no answer, so a retry may run it again.
			claim.Abandon()
		}
	}()
	next.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
	finished = true
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	claim.Finish(rec.status, rec.header, rec.body.Bytes())
	rec.writeTo(w)
	return out
}

// recorder buffers the handler's response so it can be stored.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (rc *recorder) Header() http.Header { return rc.header }

// WriteHeader keeps the final status. A 1xx is informational (103 Early
// Hints, passed on by httputil.ReverseProxy too) and is followed by the
// real status: taken as the answer, it would store and replay a 5xx as a
// success. The recorder cannot send it ahead, so it is dropped.
func (rc *recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 {
		return
	}
	if rc.status == 0 {
		rc.status = code
	}
}

func (rc *recorder) Write(p []byte) (int, error) {
	if rc.status == 0 {
		rc.status = http.StatusOK
	}
	return rc.body.Write(p)
}

func (rc *recorder) writeTo(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range rc.header {
		h[k] = v
	}
	w.WriteHeader(rc.status)
	w.Write(rc.body.Bytes())
}
