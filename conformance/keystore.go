package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemhq/idem"
)

// KeyStoreBackend describes one idem.KeyStore implementation for
// RunKeyStore.
type KeyStoreBackend struct {
	Name string
	// Open returns a working store. Each call may share data with earlier
	// ones (the suite uses a fresh scope per test).
	Open func(t *testing.T) idem.KeyStore
	// OpenCuttable returns a working store and a function that makes its
	// server unreachable mid-test (for servers: cut a TCPProxy).
	OpenCuttable func(t *testing.T) (idem.KeyStore, func())
}

// RunKeyStore is the conformance suite every key store passes.
func RunKeyStore(t *testing.T, b KeyStoreBackend) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, idem.KeyStore)
	}{
		{"ClaimCompleteReplay", ksClaimCompleteReplay},
		{"Contention", ksContention},
		{"Mismatch", ksMismatch},
		{"ScopeIsolation", ksScopes},
		{"Release", ksRelease},
		{"LeaseExpiry", ksLeaseExpiry},
		{"Fencing", ksFencing},
		{"Extend", ksExtend},
		{"ExtendPastTTL", ksExtendPastTTL},
		{"TTL", ksTTL},
		{"Payloads", ksPayloads},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := b.Open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
	t.Run("StoreDown", func(t *testing.T) {
		t.Parallel()
		s, cut := b.OpenCuttable(t)
		t.Cleanup(func() { s.Close() })
		ksDown(t, s, cut)
	})
}

// LostReply is a key store whose first Complete commits but answers with
// a store error, as when the connection drops after the server's commit:
// for tests of callers that retry a completion.
type LostReply struct {
	idem.KeyStore
	calls atomic.Int64
}

// Completes counts the Complete calls made so far.
func (s *LostReply) Completes() int64 { return s.calls.Load() }

func (s *LostReply) Complete(ctx context.Context, scope, key, token string, payload []byte, ttl time.Duration) error {
	err := s.KeyStore.Complete(ctx, scope, key, token, payload, ttl)
	if s.calls.Add(1) == 1 && err == nil {
		return &idem.StoreError{Op: "complete", Err: errors.New("connection reset after commit")}
	}
	return err
}

var scopeSeq struct {
	sync.Mutex
	n int
}

// scope is unique per call, so tests sharing one server never collide.
func scope(t *testing.T) string {
	scopeSeq.Lock()
	defer scopeSeq.Unlock()
	scopeSeq.n++
	return fmt.Sprintf("%s/%s/%d", t.Name(), idem.NewToken()[:8], scopeSeq.n)
}

const (
	longLease = time.Minute
	longTTL   = time.Hour
)

func claim(t *testing.T, s idem.KeyStore, req idem.ClaimRequest) idem.ClaimResult {
	t.Helper()
	if req.Lease == 0 {
		req.Lease = longLease
	}
	if req.TTL == 0 {
		req.TTL = longTTL
	}
	r, err := s.Claim(context.Background(), req)
	if err != nil {
		t.Fatalf("claim %q: %v", req.Key, err)
	}
	return r
}

func want(t *testing.T, r idem.ClaimResult, st idem.ClaimStatus) {
	t.Helper()
	if r.Status != st {
		t.Fatalf("claim status %v, want %v", r.Status, st)
	}
	if st == idem.StatusClaimed && r.Token == "" {
		t.Fatal("claimed without an owner token")
	}
}

func ksClaimCompleteReplay(t *testing.T, s idem.KeyStore) {
	ctx := context.Background()
	sc := scope(t)
	req := idem.ClaimRequest{Scope: sc, Key: "k1", Fingerprint: "fp1"}
	r := claim(t, s, req)
	want(t, r, idem.StatusClaimed)
	if r.Attempt != 1 {
		t.Fatalf("fresh key: attempt %d, want 1", r.Attempt)
	}
	h := claim(t, s, req)
	want(t, h, idem.StatusHeld)
	if h.LeaseLeft <= 0 || h.LeaseLeft > longLease {
		t.Fatalf("held: lease left %v, want in (0, %v]", h.LeaseLeft, longLease)
	}
	before := time.Now()
	if err := s.Complete(ctx, sc, "k1", r.Token, []byte("result-1"), longTTL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		d := claim(t, s, req)
		want(t, d, idem.StatusDone)
		if string(d.Payload) != "result-1" {
			t.Fatalf("replay payload %q, want result-1", d.Payload)
		}
		if d.CompletedAt.Before(before.Add(-2*time.Second)) || d.CompletedAt.After(time.Now().Add(2*time.Second)) {
			t.Fatalf("completed at %v, want about %v", d.CompletedAt, before)
		}
	}
	// A done key cannot be completed or released again, not even by its
	// former owner.
	if err := s.Complete(ctx, sc, "k1", r.Token, []byte("again"), longTTL); !errors.Is(err, idem.ErrLost) {
		t.Fatalf("second complete: %v, want ErrLost", err)
	}
	if err := s.Release(ctx, sc, "k1", r.Token); !errors.Is(err, idem.ErrLost) {
		t.Fatalf("release of a done key: %v, want ErrLost", err)
	}
	if d := claim(t, s, req); string(d.Payload) != "result-1" {
		t.Fatalf("record changed to %q", d.Payload)
	}
	// Unknown keys and wrong tokens are lost, not created.
	if err := s.Complete(ctx, sc, "nokey", "tok", nil, longTTL); !errors.Is(err, idem.ErrLost) {
		t.Fatalf("complete of an unknown key: %v, want ErrLost", err)
	}
	if r := claim(t, s, idem.ClaimRequest{Scope: sc, Key: "nokey"}); r.Status != idem.StatusClaimed {
		t.Fatalf("completing an unknown key left a record: %v", r.Status)
	}
}

// ksContention: many goroutines (each its own connection where the store
// pools them) claim the same keys at once; exactly one wins each key.
func ksContention(t *testing.T, s idem.KeyStore) {
	sc := scope(t)
	const keys, racers = 10, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := map[string]int{}
	start := make(chan struct{})
	var failed error
	for k := 0; k < keys; k++ {
		for i := 0; i < racers; i++ {
			wg.Add(1)
			go func(key string) {
				defer wg.Done()
				<-start
				r, err := s.Claim(context.Background(), idem.ClaimRequest{Scope: sc, Key: key, Fingerprint: "f", Lease: longLease, TTL: longTTL})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = err
					return
				}
				switch r.Status {
				case idem.StatusClaimed:
					wins[key]++
				case idem.StatusHeld:
				default:
					failed = fmt.Errorf("key %s: status %v", key, r.Status)
				}
			}(fmt.Sprintf("key-%d", k))
		}
	}
	close(start)
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	for k := 0; k < keys; k++ {
		if n := wins[fmt.Sprintf("key-%d", k)]; n != 1 {
			t.Fatalf("key-%d claimed %d times by %d racers, want exactly 1", k, n, racers)
		}
	}
}

func ksMismatch(t *testing.T, s idem.KeyStore) {
	sc := scope(t)
	r := claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "body-a"})
	want(t, r, idem.StatusClaimed)
	want(t, claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "body-b"}), idem.StatusMismatch)
	if err := s.Complete(context.Background(), sc, "k", r.Token, []byte("a"), longTTL); err != nil {
		t.Fatal(err)
	}
	want(t, claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "body-b"}), idem.StatusMismatch)
	want(t, claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "body-a"}), idem.StatusDone)
}

func ksScopes(t *testing.T, s idem.KeyStore) {
	ctx := context.Background()
	a, b := scope(t), scope(t)
	// Scopes and keys whose concatenations are equal must not collide.
	ra := claim(t, s, idem.ClaimRequest{Scope: a + "x", Key: "y", Fingerprint: "1"})
	rb := claim(t, s, idem.ClaimRequest{Scope: a, Key: "xy", Fingerprint: "2"})
	want(t, ra, idem.StatusClaimed)
	want(t, rb, idem.StatusClaimed)
	rc := claim(t, s, idem.ClaimRequest{Scope: b, Key: "y", Fingerprint: "3"})
	want(t, rc, idem.StatusClaimed)
	if err := s.Complete(ctx, a+"x", "y", ra.Token, []byte("A"), longTTL); err != nil {
		t.Fatal(err)
	}
	// Completing in one scope leaves the others as they were.
	want(t, claim(t, s, idem.ClaimRequest{Scope: a, Key: "xy", Fingerprint: "2"}), idem.StatusHeld)
	want(t, claim(t, s, idem.ClaimRequest{Scope: b, Key: "y", Fingerprint: "3"}), idem.StatusHeld)
	// A token from one scope is worthless in another.
	if err := s.Complete(ctx, b, "y", ra.Token, []byte("X"), longTTL); !errors.Is(err, idem.ErrLost) {
		t.Fatalf("foreign token: %v, want ErrLost", err)
	}
	if err := s.Complete(ctx, b, "y", rc.Token, []byte("C"), longTTL); err != nil {
		t.Fatal(err)
	}
	if d := claim(t, s, idem.ClaimRequest{Scope: a + "x", Key: "y", Fingerprint: "1"}); string(d.Payload) != "A" {
		t.Fatalf("scope a: payload %q", d.Payload)
	}
	if d := claim(t, s, idem.ClaimRequest{Scope: b, Key: "y", Fingerprint: "3"}); string(d.Payload) != "C" {
		t.Fatalf("scope b: payload %q", d.Payload)
	}
}

func ksRelease(t *testing.T, s idem.KeyStore) {
	ctx := context.Background()
	sc := scope(t)
	r := claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "a"})
	if err := s.Release(ctx, sc, "k", "not-the-token"); !errors.Is(err, idem.ErrLost) {
		t.Fatalf("release with a wrong token: %v, want ErrLost", err)
	}
	want(t, claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "a"}), idem.StatusHeld)
	if err := s.Release(ctx, sc, "k", r.Token); err != nil {
		t.Fatal(err)
	}
	// Released: the next claim starts afresh, even with another fingerprint.
	r2 := claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "b"})
	want(t, r2, idem.StatusClaimed)
	if r2.Attempt != 1 || r2.Token == r.Token {
		t.Fatalf("after release: attempt %d, same token %v", r2.Attempt, r2.Token == r.Token)
	}
	if err := s.Release(ctx, sc, "k", r.Token); !errors.Is(err, idem.ErrLost) {
		t.Fatalf("stale release: %v, want ErrLost", err)
	}
	want(t, claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "b"}), idem.StatusHeld)
}

const shortLease = 300 * time.Millisecond

func ksLeaseExpiry(t *testing.T, s idem.KeyStore) {
	sc := scope(t)
	req := idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "f", Lease: shortLease}
	want(t, claim(t, s, req), idem.StatusClaimed)
	want(t, claim(t, s, req), idem.StatusHeld)
	time.Sleep(shortLease + 150*time.Millisecond)
	// At-most-once callers see the abandoned claim and do not take it.
	for i := 0; i < 2; i++ {
		want(t, claim(t, s, req), idem.StatusAbandoned)
	}
	// At-least-once callers race for it: exactly one wins.
	req.Takeover = true
	req.Lease, req.TTL = longLease, longTTL
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []idem.ClaimResult
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Claim(context.Background(), req)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if r.Status == idem.StatusClaimed {
				won = append(won, r)
			} else if r.Status != idem.StatusHeld {
				t.Errorf("takeover race: status %v", r.Status)
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("%d callers took over the expired lease, want exactly 1", len(won))
	}
	if won[0].Attempt != 2 {
		t.Fatalf("takeover attempt %d, want 2", won[0].Attempt)
	}
	// A different fingerprint does not take over an abandoned claim.
	sc2 := scope(t)
	want(t, claim(t, s, idem.ClaimRequest{Scope: sc2, Key: "k", Fingerprint: "f", Lease: shortLease}), idem.StatusClaimed)
	time.Sleep(shortLease + 150*time.Millisecond)
	want(t, claim(t, s, idem.ClaimRequest{Scope: sc2, Key: "k", Fingerprint: "g", Takeover: true}), idem.StatusMismatch)
}

// ksFencing: a holder whose lease expired and whose key was taken over
// cannot complete, release or extend it, and the new holder's record stays.
func ksFencing(t *testing.T, s idem.KeyStore) {
	ctx := context.Background()
	sc := scope(t)
	req := idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "f", Lease: shortLease, Takeover: true}
	old := claim(t, s, req)
	want(t, old, idem.StatusClaimed)
	time.Sleep(shortLease + 150*time.Millisecond)
	req.Lease = longLease
	cur := claim(t, s, req)
	want(t, cur, idem.StatusClaimed)
	if cur.Token == old.Token {
		t.Fatal("takeover kept the old owner token")
	}
	for name, op := range map[string]func() error{
		"complete": func() error { return s.Complete(ctx, sc, "k", old.Token, []byte("stale"), longTTL) },
		"release":  func() error { return s.Release(ctx, sc, "k", old.Token) },
		"extend":   func() error { return s.Extend(ctx, sc, "k", old.Token, longLease) },
	} {
		if err := op(); !errors.Is(err, idem.ErrLost) {
			t.Fatalf("stale %s: %v, want ErrLost", name, err)
		}
	}
	want(t, claim(t, s, req), idem.StatusHeld)
	if err := s.Complete(ctx, sc, "k", cur.Token, []byte("fresh"), longTTL); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, sc, "k", old.Token, []byte("stale"), longTTL); !errors.Is(err, idem.ErrLost) {
		t.Fatalf("stale complete after the new holder completed: %v", err)
	}
	if d := claim(t, s, req); d.Status != idem.StatusDone || string(d.Payload) != "fresh" {
		t.Fatalf("record: %v %q, want done \"fresh\"", d.Status, d.Payload)
	}
	// A slow holder whose lease expired but whom nobody replaced still
	// owns the key: its result is the only one there is.
	sc2 := scope(t)
	slow := claim(t, s, idem.ClaimRequest{Scope: sc2, Key: "k", Lease: shortLease})
	time.Sleep(shortLease + 100*time.Millisecond)
	if err := s.Complete(ctx, sc2, "k", slow.Token, []byte("late"), longTTL); err != nil {
		t.Fatalf("late complete with nobody else holding: %v", err)
	}
	if d := claim(t, s, idem.ClaimRequest{Scope: sc2, Key: "k"}); string(d.Payload) != "late" {
		t.Fatalf("late record %q", d.Payload)
	}
}

func ksExtend(t *testing.T, s idem.KeyStore) {
	ctx := context.Background()
	sc := scope(t)
	req := idem.ClaimRequest{Scope: sc, Key: "k", Lease: shortLease, Takeover: true}
	r := claim(t, s, req)
	want(t, r, idem.StatusClaimed)
	// Heartbeats keep the claim alive well past its first lease.
	deadline := time.Now().Add(3 * shortLease)
	for time.Now().Before(deadline) {
		time.Sleep(shortLease / 3)
		if err := s.Extend(ctx, sc, "k", r.Token, shortLease); err != nil {
			t.Fatal(err)
		}
		want(t, claim(t, s, req), idem.StatusHeld)
	}
	// Without them it expires.
	time.Sleep(shortLease + 150*time.Millisecond)
	want(t, claim(t, s, req), idem.StatusClaimed)
	if err := s.Extend(ctx, sc, "k", "bogus", longLease); !errors.Is(err, idem.ErrLost) {
		t.Fatalf("extend with a wrong token: %v", err)
	}
}

// ksExtendPastTTL: a holder that keeps renewing keeps its key past the
// record's TTL, so an at-most-once job longer than --ttl does not run
// twice. Once it stops, the claim is reported abandoned for TTL - lease
// after its last lease ends, as without renewals, and then forgotten.
func ksExtendPastTTL(t *testing.T, s idem.KeyStore) {
	ctx := context.Background()
	sc := scope(t)
	const lease, ttl = 400 * time.Millisecond, time.Second
	req := idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "f", Lease: lease, TTL: ttl}
	r := claim(t, s, req)
	want(t, r, idem.StatusClaimed)
	start := time.Now()
	var last time.Time
	for time.Since(start) < ttl+500*time.Millisecond {
		time.Sleep(lease / 3)
		last = time.Now()
		if err := s.Extend(ctx, sc, "k", r.Token, lease); err != nil {
			t.Fatalf("renewal %v after the claim (TTL %v): %v", last.Sub(start).Round(time.Millisecond), ttl, err)
		}
		want(t, claim(t, s, req), idem.StatusHeld)
	}
	time.Sleep(time.Until(last.Add(lease + 200*time.Millisecond)))
	want(t, claim(t, s, req), idem.StatusAbandoned)
	time.Sleep(time.Until(last.Add(ttl + 200*time.Millisecond)))
	r2 := claim(t, s, req)
	want(t, r2, idem.StatusClaimed)
	if r2.Attempt != 1 {
		t.Fatalf("claim once the abandoned record expired: attempt %d, want 1", r2.Attempt)
	}
	if err := s.Complete(ctx, sc, "k", r.Token, []byte("late"), ttl); !errors.Is(err, idem.ErrLost) {
		t.Fatalf("completion by the holder that stopped renewing: %v, want ErrLost", err)
	}
}

func ksTTL(t *testing.T, s idem.KeyStore) {
	ctx := context.Background()
	sc := scope(t)
	const ttl = 400 * time.Millisecond
	r := claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "a"})
	if err := s.Complete(ctx, sc, "k", r.Token, []byte("x"), ttl); err != nil {
		t.Fatal(err)
	}
	want(t, claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "a"}), idem.StatusDone)
	time.Sleep(ttl + 200*time.Millisecond)
	// Expired: forgotten entirely, so even another fingerprint may claim.
	r2 := claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k", Fingerprint: "b"})
	want(t, r2, idem.StatusClaimed)
	if r2.Attempt != 1 {
		t.Fatalf("claim after TTL: attempt %d, want 1", r2.Attempt)
	}
	// An abandoned claim also ends with its TTL.
	r3 := claim(t, s, idem.ClaimRequest{Scope: sc, Key: "held", Lease: 100 * time.Millisecond, TTL: ttl})
	want(t, r3, idem.StatusClaimed)
	time.Sleep(200 * time.Millisecond)
	want(t, claim(t, s, idem.ClaimRequest{Scope: sc, Key: "held"}), idem.StatusAbandoned)
	time.Sleep(ttl)
	want(t, claim(t, s, idem.ClaimRequest{Scope: sc, Key: "held"}), idem.StatusClaimed)
}

func ksPayloads(t *testing.T, s idem.KeyStore) {
	ctx := context.Background()
	sc := scope(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for name, p := range map[string][]byte{"empty": {}, "binary": all, "big": big} {
		// Keys are arbitrary text up to 255 characters, quotes included.
		key := name + `-'"\;` + string(bytes.Repeat([]byte("k"), 240))
		r := claim(t, s, idem.ClaimRequest{Scope: sc, Key: key, Fingerprint: name})
		want(t, r, idem.StatusClaimed)
		if err := s.Complete(ctx, sc, key, r.Token, p, longTTL); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d := claim(t, s, idem.ClaimRequest{Scope: sc, Key: key, Fingerprint: name})
		want(t, d, idem.StatusDone)
		if !bytes.Equal(d.Payload, p) {
			t.Fatalf("%s payload: %d bytes back, want %d identical", name, len(d.Payload), len(p))
		}
	}
}

// ksDown: once the server is unreachable every call is a StoreError (fail
// closed), never a claim or "not found".
func ksDown(t *testing.T, s idem.KeyStore, cut func()) {
	ctx := context.Background()
	sc := scope(t)
	r := claim(t, s, idem.ClaimRequest{Scope: sc, Key: "k"})
	want(t, r, idem.StatusClaimed)
	cut()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		res, err := s.Claim(cctx, idem.ClaimRequest{Scope: sc, Key: fmt.Sprintf("new-%d", i), Lease: longLease, TTL: longTTL})
		if err == nil {
			t.Fatalf("claim with the store down succeeded: %v", res.Status)
		}
		if !idem.IsStoreError(err) {
			t.Fatalf("claim with the store down: %T %v, want a *idem.StoreError", err, err)
		}
	}
	if err := s.Complete(cctx, sc, "k", r.Token, []byte("x"), longTTL); !idem.IsStoreError(err) {
		t.Fatalf("complete with the store down: %v, want a StoreError", err)
	}
	if err := s.Ping(cctx); err == nil {
		t.Fatal("ping with the store down succeeded")
	}
}

// TCPProxy forwards a local port to addr until cut is called; then it
// drops every connection and refuses new ones. Tests use it to take a
// shared server "down" for one client without stopping it for anyone else.
func TCPProxy(t testing.TB, addr string) (local string, cut func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	closed := false
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				u.Close()
				continue
			}
			conns = append(conns, c, u)
			mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	cut = func() {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		closed = true
		ln.Close()
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(cut)
	return ln.Addr().String(), cut
}
