package httpidem

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/idemhq/idem"
)

// The middleware's decisions do not depend on net/http: Check, Begin and
// a Claim's Finish are the whole protocol, and Wrap is one user of them.
// An HTTP stack other than net/http (idem serve's fasthttp front end, a
// framework with its own request type) calls them directly:
//
//	key, ans, out := m.Check(method, keyLines)
//	if out == Unkeyed { forward; return }
//	if ans != nil { send ans; return }
//	claim, ans, out := m.Begin(ctx, Request{…, Key: key, Body: body})
//	if ans != nil { send ans; return }
//	status, header, body := forward…
//	claim.Finish(status, header, body) // or claim.Abandon() without an answer
//	send the answer

// Request is what the guard needs of a keyed request.
type Request struct {
	Method string
	// Path is the escaped path (url.URL's EscapedPath) and RawQuery the
	// query without its "?": both are part of the fingerprint.
	Path, RawQuery string
	// Scope is the value of the scope header (ScopeHeader), its field
	// lines joined by "\n"; empty without one.
	Scope string
	// Key is the key from Check; Body the whole request body.
	Key  string
	Body []byte
}

// Answer is a response the guard gives instead of the handler's: a
// replay or a problem.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

func (a *Answer) write(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range a.Header {
		h[k] = v
	}
	w.WriteHeader(a.Status)
	w.Write(a.Body) // an error here is a client that went away
}

// Check reads a request's method and Idempotency-Key field lines. out is
// Unkeyed for a request the guard leaves alone (pass it through); with an
// answer (out Rejected) the request must get that answer and go no
// further; otherwise key is the request's key.
func (m *Middleware) Check(method string, keyLines []string) (key string, ans *Answer, out Outcome) {
	if !m.methods[method] {
		return "", nil, Unkeyed
	}
	if len(keyLines) == 0 {
		if m.o.RequireKey {
			return "", problem(http.StatusBadRequest, "idempotency-key-missing", "Idempotency-Key is missing",
				"This endpoint requires an Idempotency-Key header, e.g. Idempotency-Key: \"8e03978e-40d5-43e8-bc93-6894a57f9324\".", 0), Rejected
		}
		return "", nil, Unkeyed
	}
	key, err := parseKey(keyLines, m.o.BareKeys)
	if err != nil {
		return "", problem(http.StatusBadRequest, "idempotency-key-invalid", "Idempotency-Key is invalid", err.Error(), 0), Rejected
	}
	return key, nil, Forwarded
}

// ScopeHeader names the header whose value scopes keys, or is empty when
// keys are not scoped by one.
func (m *Middleware) ScopeHeader() string {
	if m.o.ScopeHeader == "-" {
		return ""
	}
	return m.o.ScopeHeader
}

// MaxRequestBytes is the largest body a keyed request may carry; a larger
// one gets TooLarge.
func (m *Middleware) MaxRequestBytes() int64 { return m.o.MaxRequestBytes }

// TooLarge is the answer to a keyed request whose body is over
// MaxRequestBytes (outcome Rejected).
func (m *Middleware) TooLarge() *Answer {
	return problem(http.StatusRequestEntityTooLarge, "request-too-large", "Request body too large",
		fmt.Sprintf("Requests with an Idempotency-Key may carry at most %d bytes.", m.o.MaxRequestBytes), 0)
}

// Unreadable is the answer to a keyed request whose body could not be
// read (outcome Rejected).
func (m *Middleware) Unreadable(err error) *Answer {
	return problem(http.StatusBadRequest, "request-unreadable", "Request body could not be read", err.Error(), 0)
}

// Observe reports a request's outcome and duration to Options.Observe.
func (m *Middleware) Observe(out Outcome, d time.Duration) {
	if m.o.Observe != nil {
		m.o.Observe(out, d)
	}
}

// Begin claims r's key. Either the request may run (a Claim, outcome
// Forwarded), or it must get the answer instead: a replay, 409, 422 or,
// when the store cannot be reached, 503. Store calls outlive ctx's
// cancellation: a client that hangs up does not leave a half-made claim.
func (m *Middleware) Begin(ctx context.Context, r Request) (*Claim, *Answer, Outcome) {
	scope := m.scope(r.Method, r.Path, r.Scope)
	base := context.WithoutCancel(ctx)
	sctx, cancel := context.WithTimeout(base, m.o.StoreTimeout)
	fp := fingerprint(r.Method, r.Path, r.RawQuery, r.Body)
	res, err := m.o.Store.Claim(sctx, idem.ClaimRequest{Scope: scope, Key: r.Key, Fingerprint: fp,
		Lease: m.o.Lease, TTL: m.o.TTL, Takeover: true})
	cancel()
	if err != nil {
		m.o.Logger.Error("idempotency key store unavailable; refusing the request", "err", err)
		return nil, problem(http.StatusServiceUnavailable, "key-store-unavailable", "Idempotency key store unavailable",
			"The request was not executed. Retry it later with the same Idempotency-Key.", time.Second), StoreError
	}
	switch res.Status {
	case idem.StatusDone:
		ans, err := replay(res.Payload)
		if err != nil {
			m.o.Logger.Error("stored response unreadable", "err", err)
			ans = problem(http.StatusInternalServerError, "stored-response-unreadable", "Stored response unreadable", err.Error(), 0)
		}
		return nil, ans, Replayed
	case idem.StatusHeld, idem.StatusAbandoned:
		// Retry-After is short: the first request usually ends soon, and
		// only a dead holder keeps the key until its lease ends.
		return nil, problem(http.StatusConflict, "request-in-progress", "A request with this Idempotency-Key is in progress",
			"Retry after the first request has finished; its response will then be returned.", time.Second), Conflict
	case idem.StatusMismatch:
		return nil, problem(http.StatusUnprocessableEntity, "idempotency-key-reused", "Idempotency-Key reused for a different request",
			"This key was first used with another method, path, query or body. Use a new key for a new request.", 0), Mismatch
	}
	c := &Claim{m: m, base: base, scope: scope, key: r.Key, token: res.Token, fp: fp}
	c.heartbeat()
	return c, nil, Forwarded
}

// Claim is a key held for one request while it runs. The lease is renewed
// until Finish or Abandon, exactly one of which must be called.
type Claim struct {
	m                 *Middleware
	base              context.Context
	scope, key, token string
	fp                string // the request's fingerprint, to read the record back

	mu      sync.Mutex
	stopped bool
	timer   *time.Timer
}

// Finish records the answer the request got: a 5xx or 429 releases the
// key (a retry runs the request again), any other status is stored for
// replays. header is the answer's as sent; headers about the connection
// or transfer are not stored.
func (c *Claim) Finish(status int, header http.Header, body []byte) {
	c.stop() // before completing: a late renewal would find the key done
	if status >= 500 || status == http.StatusTooManyRequests {
		c.release()
		return
	}
	c.complete(encode(status, header, body, c.m.o.MaxResponseBytes))
}

// Abandon releases the key of a request that got no answer (the handler
// panicked, the upstream did not answer): its outcome is unknown, so a
// retry may run it again.
func (c *Claim) Abandon() {
	c.stop()
	c.release()
}

// heartbeat renews the lease while the request runs, so a slow handler is
// not mistaken for a dead one. A timer, not a goroutine with a ticker:
// almost every request ends long before its first renewal, and a
// goroutine, a ticker and two channels per request were CPU that a proxy
// on a small machine shares with its upstream and its store.
func (c *Claim) heartbeat() {
	c.mu.Lock() // the callback must not see the timer unset
	defer c.mu.Unlock()
	every := c.m.o.Lease / 3
	c.timer = time.AfterFunc(every, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.stopped {
			return
		}
		ctx, cancel := context.WithTimeout(c.base, c.m.o.StoreTimeout)
		err := c.m.o.Store.Extend(ctx, c.scope, c.key, c.token, c.m.o.Lease)
		cancel()
		if err != nil {
			c.m.o.Logger.Warn("could not renew the lease of a running request", "err", err)
		}
		c.timer.Reset(every)
	})
}

// stop ends the renewals, waiting for one in progress.
func (c *Claim) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	c.timer.Stop()
}

func (c *Claim) release() {
	ctx, cancel := context.WithTimeout(c.base, c.m.o.StoreTimeout)
	defer cancel()
	if err := c.m.o.Store.Release(ctx, c.scope, c.key, c.token); err != nil {
		// Not released: the claim ends with its lease instead.
		c.m.o.Logger.Warn("could not release a claim; it ends with its lease", "err", err)
	}
}

// complete stores the response, retrying a failing store a few times: a
// response that is not recorded lets a retry run the request again once
// the lease ends.
func (c *Claim) complete(payload []byte) {
	var err error
	for try, wait := 0, 20*time.Millisecond; try < 4; try, wait = try+1, wait*4 {
		ctx, cancel := context.WithTimeout(c.base, c.m.o.StoreTimeout)
		err = c.m.o.Store.Complete(ctx, c.scope, c.key, c.token, payload, c.m.o.TTL)
		if try > 0 && errors.Is(err, idem.ErrLost) && idem.CompletedAs(ctx, c.m.o.Store, c.scope, c.key, c.fp, payload, c.m.o.TTL) {
			err = nil // an earlier try committed; its answer was lost
		}
		cancel()
		if err == nil || errors.Is(err, idem.ErrLost) {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		c.m.o.Logger.Error("response not recorded; a retry after the lease may run the request again", "err", err)
	}
}

// scope is method, path and a hash of the scope header: the raw header
// (a credential) is never stored.
func (m *Middleware) scope(method, path, scopeValue string) string {
	h := sha256.Sum256([]byte(scopeValue))
	return method + " " + path + " " + hex.EncodeToString(h[:16])
}

// Fingerprint identifies a request: method, path, query and body, each
// length-prefixed so no two different requests encode alike.
func Fingerprint(r *http.Request, body []byte) string {
	return fingerprint(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, body)
}

func fingerprint(method, path, query string, body []byte) string {
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	for _, part := range [][]byte{[]byte(method), []byte(path), []byte(query), body} {
		h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(part)))])
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
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

func encode(status int, header http.Header, body []byte, limit int64) []byte {
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	s := stored{Status: status, Header: h, Body: body}
	if int64(len(body)) > limit {
		s.Body, s.Omitted = nil, true
	}
	b, _ := json.Marshal(s) // plain data: cannot fail
	return b
}

func replay(payload []byte) (*Answer, error) {
	var s stored
	if err := json.Unmarshal(payload, &s); err != nil {
		return nil, err
	}
	h := s.Header
	if h == nil {
		h = http.Header{}
	}
	h.Set("Idempotent-Replayed", "true")
	if s.Omitted {
		h.Set("Idempotent-Body-Omitted", "true")
	}
	h.Set("Content-Length", strconv.Itoa(len(s.Body)))
	return &Answer{Status: s.Status, Header: h, Body: s.Body}, nil
}

// ProblemTypePrefix starts the "type" of every problem+json answer; the
// rest names the case (README: idempotency-key-reused, request-in-progress,
// …). A URN, not a link: it names the case stably without promising a page.
const ProblemTypePrefix = "urn:idem:problem:"

// problem is an RFC 9457 problem+json answer.
func problem(status int, kind, title, detail string, retryAfter time.Duration) *Answer {
	h := http.Header{"Content-Type": {"application/problem+json"}}
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
	b, _ := json.Marshal(map[string]any{ // plain data: cannot fail
		"type":   ProblemTypePrefix + kind,
		"title":  title,
		"status": status,
		"detail": detail,
	})
	return &Answer{Status: status, Header: h, Body: append(b, '\n')}
}
