// Package memstore is an in-memory idem.KeyStore for tests and
// single-process use. Nothing survives the process, so it gives no
// protection across restarts; use sqlite, postgres or redis for that.
package memstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/idemhq/idem"
)

type entry struct {
	fp, token   string
	done        bool
	attempt     int
	leaseUntil  time.Time
	expires     time.Time
	payload     []byte
	completedAt time.Time
}

type id struct{ scope, key string }

// Store is safe for concurrent use. Down simulates an unreachable store
// (every call fails), for fail-closed tests.
type Store struct {
	mu     sync.Mutex
	m      map[id]*entry
	down   bool
	now    func() time.Time
	closed bool
}

var _ idem.KeyStore = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{m: map[id]*entry{}, now: time.Now} }

// SetDown makes every later call fail (true) or work again (false).
func (s *Store) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

var errDown = errors.New("memstore: store is down")

func (s *Store) check(op string) error {
	if s.down || s.closed {
		return &idem.StoreError{Op: op, Err: errDown}
	}
	return nil
}

// live returns the record of (scope, key) unless its TTL ran out.
func (s *Store) live(k id, now time.Time) *entry {
	e := s.m[k]
	if e != nil && !now.Before(e.expires) {
		delete(s.m, k)
		return nil
	}
	return e
}

func (s *Store) Claim(ctx context.Context, req idem.ClaimRequest) (idem.ClaimResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("claim"); err != nil {
		return idem.ClaimResult{}, err
	}
	now := s.now()
	k := id{req.Scope, req.Key}
	e := s.live(k, now)
	if e == nil {
		tok := idem.NewToken()
		s.m[k] = &entry{fp: req.Fingerprint, token: tok, attempt: 1,
			leaseUntil: now.Add(req.Lease), expires: now.Add(req.TTL)}
		return idem.ClaimResult{Status: idem.StatusClaimed, Token: tok, Attempt: 1}, nil
	}
	switch {
	case e.fp != req.Fingerprint:
		return idem.ClaimResult{Status: idem.StatusMismatch, Attempt: e.attempt}, nil
	case e.done:
		return idem.ClaimResult{Status: idem.StatusDone, Attempt: e.attempt,
			Payload: append([]byte(nil), e.payload...), CompletedAt: e.completedAt}, nil
	case now.Before(e.leaseUntil):
		return idem.ClaimResult{Status: idem.StatusHeld, Attempt: e.attempt, LeaseLeft: e.leaseUntil.Sub(now)}, nil
	case !req.Takeover:
		return idem.ClaimResult{Status: idem.StatusAbandoned, Attempt: e.attempt}, nil
	}
	e.token = idem.NewToken()
	e.attempt++
	e.leaseUntil = now.Add(req.Lease)
	e.expires = now.Add(req.TTL)
	return idem.ClaimResult{Status: idem.StatusClaimed, Token: e.token, Attempt: e.attempt}, nil
}

// owned returns the held record owned by token, or ErrLost.
func (s *Store) owned(scope, key, token string) (*entry, error) {
	e := s.live(id{scope, key}, s.now())
	if e == nil || e.done || e.token != token {
		return nil, idem.ErrLost
	}
	return e, nil
}

func (s *Store) Complete(ctx context.Context, scope, key, token string, payload []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("complete"); err != nil {
		return err
	}
	e, err := s.owned(scope, key, token)
	if err != nil {
		return err
	}
	now := s.now()
	e.done, e.token = true, ""
	e.payload = append([]byte(nil), payload...)
	e.completedAt = now
	e.expires = now.Add(ttl)
	return nil
}

func (s *Store) Release(ctx context.Context, scope, key, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("release"); err != nil {
		return err
	}
	if _, err := s.owned(scope, key, token); err != nil {
		return err
	}
	delete(s.m, id{scope, key})
	return nil
}

func (s *Store) Extend(ctx context.Context, scope, key, token string, lease time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("extend"); err != nil {
		return err
	}
	e, err := s.owned(scope, key, token)
	if err != nil {
		return err
	}
	until := s.now().Add(lease)
	if d := until.Sub(e.leaseUntil); d > 0 {
		e.expires = e.expires.Add(d)
	}
	e.leaseUntil = until
	return nil
}

func (s *Store) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.check("ping")
}

func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}
