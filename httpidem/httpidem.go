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
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
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
	// TTL keeps completed responses (default 24h).
	TTL time.Duration
	// Lease is how long a claim holds without a heartbeat; the middleware
	// renews it while the handler runs, so it only matters when the
	// process dies (default 30s).
	Lease time.Duration
	// Methods the middleware covers (default POST and PATCH).
	Methods []string
	// RequireKey answers 400 to a covered request without a key.
	RequireKey bool
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
		out := m.serve(w, r, next)
		if m.o.Observe != nil {
			m.o.Observe(out, time.Since(start))
		}
	})
}

func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) Outcome {
	if !m.methods[r.Method] {
		next.ServeHTTP(w, r)
		return Unkeyed
	}
	lines := r.Header.Values("Idempotency-Key")
	if len(lines) == 0 {
		if m.o.RequireKey {
			problem(w, http.StatusBadRequest, "idempotency-key-missing", "Idempotency-Key is missing",
				"This endpoint requires an Idempotency-Key header, e.g. Idempotency-Key: \"8e03978e-40d5-43e8-bc93-6894a57f9324\".", 0)
			return Rejected
		}
		next.ServeHTTP(w, r)
		return Unkeyed
	}
	key, err := ParseKey(lines)
	if err != nil {
		problem(w, http.StatusBadRequest, "idempotency-key-invalid", "Idempotency-Key is invalid", err.Error(), 0)
		return Rejected
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, m.o.MaxRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			problem(w, http.StatusRequestEntityTooLarge, "request-too-large", "Request body too large",
				fmt.Sprintf("Requests with an Idempotency-Key may carry at most %d bytes.", m.o.MaxRequestBytes), 0)
		} else {
			problem(w, http.StatusBadRequest, "request-unreadable", "Request body could not be read", err.Error(), 0)
		}
		return Rejected
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }

	scope := m.scope(r)
	// Store calls outlive a client that hangs up: a completion must be
	// recorded even if nobody waits for it any more.
	base := context.WithoutCancel(r.Context())
	ctx, cancel := context.WithTimeout(base, m.o.StoreTimeout)
	res, err := m.o.Store.Claim(ctx, idem.ClaimRequest{Scope: scope, Key: key, Fingerprint: Fingerprint(r, body),
		Lease: m.o.Lease, TTL: m.o.TTL, Takeover: true})
	cancel()
	if err != nil {
		m.o.Logger.Error("idempotency key store unavailable; refusing the request", "err", err)
		problem(w, http.StatusServiceUnavailable, "key-store-unavailable", "Idempotency key store unavailable",
			"The request was not executed. Retry it later with the same Idempotency-Key.", time.Second)
		return StoreError
	}
	switch res.Status {
	case idem.StatusDone:
		if err := replay(w, res.Payload); err != nil {
			m.o.Logger.Error("stored response unreadable", "err", err)
			problem(w, http.StatusInternalServerError, "stored-response-unreadable", "Stored response unreadable", err.Error(), 0)
		}
		return Replayed
	case idem.StatusHeld, idem.StatusAbandoned:
		// Retry-After is short: the first request usually ends soon, and
		// only a dead holder keeps the key until its lease ends.
		problem(w, http.StatusConflict, "request-in-progress", "A request with this Idempotency-Key is in progress",
			"Retry after the first request has finished; its response will then be returned.", time.Second)
		return Conflict
	case idem.StatusMismatch:
		problem(w, http.StatusUnprocessableEntity, "idempotency-key-reused", "Idempotency-Key reused for a different request",
			"This key was first used with another method, path, query or body. Use a new key for a new request.", 0)
		return Mismatch
	}
	// The handler runs to its end even if the client hangs up: its answer
	// is then stored and the client's retry gets it, instead of a second
	// execution of a request whose outcome nobody saw.
	m.execute(w, r.WithContext(base), next, base, scope, key, res.Token)
	return Forwarded
}

// execute runs the handler for a claimed key, then stores or releases.
func (m *Middleware) execute(w http.ResponseWriter, r *http.Request, next http.Handler, base context.Context, scope, key, token string) {
	stop := m.heartbeat(base, scope, key, token)
	rec := &recorder{header: http.Header{}, limit: m.o.MaxResponseBytes}
	finished := false
	defer func() {
		if !finished {
			// The handler panicked: its outcome is unknown to us, but it
			// gave no answer, so a retry may run it again.
			stop()
			m.release(base, scope, key, token)
		}
	}()
	next.ServeHTTP(rec, r)
	finished = true
	stop() // before completing: a late renewal would find the key done
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status >= 500 || rec.status == http.StatusTooManyRequests {
		m.release(base, scope, key, token)
	} else {
		m.complete(base, scope, key, token, rec)
	}
	rec.writeTo(w)
}

// heartbeat renews the lease while the handler runs, so a slow handler is
// not mistaken for a dead one. A timer, not a goroutine with a ticker:
// almost every request ends long before its first renewal, and a
// goroutine, a ticker and two channels per request were CPU that a proxy
// on a small machine shares with its upstream and its store. The returned
// stop waits for a renewal in progress.
func (m *Middleware) heartbeat(base context.Context, scope, key, token string) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock() // the callback must not see t unset
	defer mu.Unlock()
	t = time.AfterFunc(m.o.Lease/3, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		ctx, cancel := context.WithTimeout(base, m.o.StoreTimeout)
		err := m.o.Store.Extend(ctx, scope, key, token, m.o.Lease)
		cancel()
		if err != nil {
			m.o.Logger.Warn("could not renew the lease of a running request", "err", err)
		}
		t.Reset(m.o.Lease / 3)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

func (m *Middleware) release(base context.Context, scope, key, token string) {
	ctx, cancel := context.WithTimeout(base, m.o.StoreTimeout)
	defer cancel()
	if err := m.o.Store.Release(ctx, scope, key, token); err != nil {
		// Not released: the claim ends with its lease instead.
		m.o.Logger.Warn("could not release a claim; it ends with its lease", "err", err)
	}
}

// complete stores the response, retrying a failing store a few times: a
// response that is not recorded lets a retry run the request again once
// the lease ends.
func (m *Middleware) complete(base context.Context, scope, key, token string, rec *recorder) {
	payload := rec.encode()
	var err error
	for try, wait := 0, 20*time.Millisecond; try < 4; try, wait = try+1, wait*4 {
		ctx, cancel := context.WithTimeout(base, m.o.StoreTimeout)
		err = m.o.Store.Complete(ctx, scope, key, token, payload, m.o.TTL)
		cancel()
		if err == nil || errors.Is(err, idem.ErrLost) {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		m.o.Logger.Error("response not recorded; a retry after the lease may run the request again", "err", err)
	}
}

// scope is method, path and a hash of the scope header: the raw header
// (a credential) is never stored.
func (m *Middleware) scope(r *http.Request) string {
	var v string
	if m.o.ScopeHeader != "-" {
		v = strings.Join(r.Header.Values(m.o.ScopeHeader), "\n")
	}
	h := sha256.Sum256([]byte(v))
	return r.Method + " " + r.URL.EscapedPath() + " " + hex.EncodeToString(h[:16])
}

// Fingerprint identifies a request: method, path, query and body, each
// length-prefixed so no two different requests encode alike.
func Fingerprint(r *http.Request, body []byte) string {
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	for _, part := range [][]byte{[]byte(r.Method), []byte(r.URL.EscapedPath()), []byte(r.URL.RawQuery), body} {
		h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(part)))])
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// recorder buffers the handler's response so it can be stored.
type recorder struct {
	header    http.Header
	status    int
	body      bytes.Buffer
	limit     int64
	truncated bool
}

func (rc *recorder) Header() http.Header { return rc.header }

func (rc *recorder) WriteHeader(code int) {
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

// stored is the record of a response in the key store.
type stored struct {
	Status  int         `json:"status"`
	Header  http.Header `json:"header"`
	Body    []byte      `json:"body"`
	Omitted bool        `json:"omitted,omitempty"`
}

// Headers that describe one connection or one transfer, not the response.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Trailer", "Te", "Content-Length", "Date"}

func (rc *recorder) encode() []byte {
	h := rc.header.Clone()
	for _, k := range hopHeaders {
		h.Del(k)
	}
	s := stored{Status: rc.status, Header: h, Body: rc.body.Bytes()}
	if int64(rc.body.Len()) > rc.limit {
		s.Body, s.Omitted = nil, true
	}
	b, _ := json.Marshal(s) // plain data: cannot fail
	return b
}

func replay(w http.ResponseWriter, payload []byte) error {
	var s stored
	if err := json.Unmarshal(payload, &s); err != nil {
		return err
	}
	h := w.Header()
	for k, v := range s.Header {
		h[k] = v
	}
	h.Set("Idempotent-Replayed", "true")
	if s.Omitted {
		h.Set("Idempotent-Body-Omitted", "true")
	}
	h.Set("Content-Length", strconv.Itoa(len(s.Body)))
	w.WriteHeader(s.Status)
	w.Write(s.Body) // an error here is a client that went away
	return nil
}

// problem writes an RFC 9457 problem+json answer.
func problem(w http.ResponseWriter, status int, kind, title, detail string, retryAfter time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"type":   "https://github.com/idemhq/idem/blob/main/SPEC.md#" + kind,
		"title":  title,
		"status": status,
		"detail": detail,
	})
}
