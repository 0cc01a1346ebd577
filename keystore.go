package idem

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// KeyStore records idempotency keys for `idem once`, `idem serve` and the
// HTTP middleware. A key lives in a scope (the middleware's method, path and
// client; "once" for the command) and moves through two states:
//
//	held: claimed by one caller (the owner token) until its lease ends;
//	done: completed with a payload, kept until the retention TTL ends.
//
// Claim is an atomic insert-if-absent, so under any contention exactly one
// caller gets StatusClaimed. Complete, Release and Extend check the owner
// token (fencing): a caller whose lease ran out and whose key was taken
// over gets ErrLost and cannot overwrite the new holder's record.
//
// Every implementation fails closed: a store it cannot reach is an error
// from every method, never "key not found". Implementations: memstore
// (tests), sqlite, postgres and redis; conformance.RunKeyStore tests them
// all the same way.
type KeyStore interface {
	Claim(ctx context.Context, req ClaimRequest) (ClaimResult, error)
	// Complete turns a held key into a done record with payload, kept for
	// ttl from now.
	Complete(ctx context.Context, scope, key, token string, payload []byte, ttl time.Duration) error
	// Release frees a held key so the next Claim starts afresh.
	Release(ctx context.Context, scope, key, token string) error
	// Extend pushes the lease of a held key to now + lease (a heartbeat
	// for long work), and the record's expiry by as much as the lease
	// moved: a holder that keeps renewing never outlives its record (which
	// would free the key for a second caller while the first still runs),
	// and once it stops, the abandoned claim stays visible for as long
	// after its lease as it would have without renewals.
	Extend(ctx context.Context, scope, key, token string, lease time.Duration) error
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	Close() error
}

// ClaimRequest asks for a key.
type ClaimRequest struct {
	Scope, Key string
	// Fingerprint identifies the request the key was first used for; a
	// later claim with another fingerprint gets StatusMismatch.
	Fingerprint string
	// Lease is how long the claim holds without Extend; after it the
	// holder is presumed dead.
	Lease time.Duration
	// TTL is how long the record is kept at all (from the claim, and again
	// from completion).
	TTL time.Duration
	// Takeover lets this claim take a key whose holder's lease expired
	// (at-least-once). Without it such a key reports StatusAbandoned
	// (at-most-once: the earlier attempt's outcome is unknown).
	Takeover bool
}

// ClaimStatus is what a Claim found.
type ClaimStatus int

const (
	// StatusClaimed: the caller holds the key and must Complete or Release it.
	StatusClaimed ClaimStatus = iota + 1
	// StatusDone: the key was completed; Record holds the payload.
	StatusDone
	// StatusHeld: another caller holds the key; LeaseLeft says for how long.
	StatusHeld
	// StatusMismatch: the key was used with another fingerprint.
	StatusMismatch
	// StatusAbandoned: the holder's lease expired and Takeover was false.
	StatusAbandoned
)

func (s ClaimStatus) String() string {
	switch s {
	case StatusClaimed:
		return "claimed"
	case StatusDone:
		return "done"
	case StatusHeld:
		return "held"
	case StatusMismatch:
		return "mismatch"
	case StatusAbandoned:
		return "abandoned"
	}
	return fmt.Sprintf("ClaimStatus(%d)", int(s))
}

// ClaimResult is the outcome of a Claim.
type ClaimResult struct {
	Status ClaimStatus
	// Token is the owner token when Status is StatusClaimed.
	Token string
	// Attempt counts claims of this record: 1 for a fresh key, more after
	// takeovers of expired leases.
	Attempt int
	// Payload and CompletedAt are set when Status is StatusDone.
	Payload     []byte
	CompletedAt time.Time
	// LeaseLeft is the remaining lease when Status is StatusHeld.
	LeaseLeft time.Duration
}

// ErrLost is returned by Complete, Release and Extend when the caller no
// longer owns the key: its lease expired and another caller took the key,
// or the record is gone. The caller must not assume its result was stored.
var ErrLost = errors.New("claim lost: the key is no longer held by this owner")

// CompletedAs reports whether key's record is done with exactly payload.
// A Complete retried after an error (a timeout, a dropped connection) may
// find the key no longer held because its first attempt did commit and
// only the answer was lost; ErrLost then does not mean another caller took
// the key. The record is read by claiming it at-most-once, which changes
// nothing but for a key that was freed meanwhile: that claim is released.
// Another run that took the key over and stored the same bytes also counts
// as done: the recorded result is the same.
func CompletedAs(ctx context.Context, store KeyStore, scope, key, fingerprint string, payload []byte, ttl time.Duration) bool {
	r, err := store.Claim(ctx, ClaimRequest{Scope: scope, Key: key, Fingerprint: fingerprint, Lease: time.Second, TTL: max(ttl, time.Second)})
	if err != nil {
		return false
	}
	switch r.Status {
	case StatusDone:
		return bytes.Equal(r.Payload, payload)
	case StatusClaimed:
		_ = store.Release(ctx, scope, key, r.Token)
	}
	return false
}

// StoreError is a key store that failed to answer (down, timed out,
// refused). Callers fail closed on it: the request is not executed.
type StoreError struct {
	Op  string
	Err error
}

func (e *StoreError) Error() string { return "key store " + e.Op + ": " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// ExitCode makes a store failure exit 1: retrying later is safe.
func (e *StoreError) ExitCode() int { return ExitFailed }

// IsStoreError reports whether err is a key store failure.
func IsStoreError(err error) bool {
	var se *StoreError
	return errors.As(err, &se)
}

// NewToken returns a random owner token (128 bits, hex).
func NewToken() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; a token
		// built from the clock still differs between owners.
		binary.BigEndian.PutUint64(b[:], uint64(time.Now().UnixNano()))
	}
	return hex.EncodeToString(b[:])
}

// DeriveKey derives a deterministic idempotency key from named business
// fields, e.g. DeriveKey(map[string]string{"order_id": "1", "amount": "2"}).
//
// The seed's sha256(f"{order_id}:{amount}") makes ("1:2", "3") and
// ("1", "2:3") the same key: the separator can occur inside a value. Here
// the number of fields, then every name and value, is written with its
// length in front (a uvarint), so no two different field sets encode to the
// same bytes. Fields are sorted by name, so the order they are given in
// does not matter. The result is the hex SHA-256 of "idem-key-v1" followed
// by that encoding (64 characters).
func DeriveKey(fields map[string]string) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	h.Write([]byte("idem-key-v1"))
	var buf [binary.MaxVarintLen64]byte
	put := func(s string) {
		h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(names)))])
	for _, n := range names {
		put(n)
		put(fields[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ParseKeyFields reads FIELD=VALUE arguments for DeriveKey. The value may
// contain '='; a missing '=', an empty name or a repeated name is bad input.
// ColonKey is the seed reference's key, the hex SHA-256 of the values
// joined by ":" in the order given (sha256(f"{order_id}:{amount}")), for
// talking to services that already derive keys that way. That encoding
// is ambiguous when a value holds ":" (("1:2", "3") and ("1", "2:3") give
// one key), so such a value is refused instead of hashed.
func ColonKey(values []string) (string, error) {
	if len(values) == 0 {
		return "", BadInput("no values: give them in the order the other side joins them, e.g. 1042 19.99")
	}
	for i, v := range values {
		if strings.Contains(v, ":") {
			return "", BadInput("value %d %q holds \":\", which makes the colon-joined key ambiguous; use named fields (idem key FIELD=VALUE…) instead", i+1, v)
		}
	}
	sum := sha256.Sum256([]byte(strings.Join(values, ":")))
	return hex.EncodeToString(sum[:]), nil
}

func ParseKeyFields(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, BadInput("no fields: give FIELD=VALUE, e.g. order_id=1042 amount=19.99")
	}
	m := make(map[string]string, len(args))
	for i, a := range args {
		name, val, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return nil, BadInput("argument %d %q: want FIELD=VALUE", i+1, a)
		}
		if _, dup := m[name]; dup {
			return nil, BadInput("field %q given twice", name)
		}
		m[name] = val
	}
	return m, nil
}
