package idem_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/memstore"
)

// TestOnceCompletionReplyLost: the retried completion finds the key done
// by its own first attempt. That is success (exit 0, the result replays),
// not "taken over by another run, may have run twice".
func TestOnceCompletionReplyLost(t *testing.T) {
	store := &conformance.LostReply{KeyStore: memstore.New()}
	spec := func(out *bytes.Buffer, cmd ...string) idem.OnceSpec {
		return idem.OnceSpec{Key: "k", Command: cmd, Lease: time.Second, TTL: time.Hour, MaxOutput: 1 << 20,
			Stdout: out, Stderr: &bytes.Buffer{}}
	}
	var first, again bytes.Buffer
	if err := idem.Once(context.Background(), store, spec(&first, "echo", "ran")); err != nil {
		t.Fatalf("first run, whose completion's reply was lost: %v", err)
	}
	if store.Completes() < 2 {
		t.Fatalf("Complete called %d times, want a retry", store.Completes())
	}
	if err := idem.Once(context.Background(), store, spec(&again, "echo", "second")); err != nil || again.String() != "ran\n" {
		t.Fatalf("second run: %v, stdout %q; want the first run's output replayed", err, again.String())
	}
}

// TestCompletedAs: true only for a done record with the same bytes; a key
// found free is claimed to look and left free again.
func TestCompletedAs(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	r, err := s.Claim(ctx, idem.ClaimRequest{Scope: "s", Key: "done", Fingerprint: "f", Lease: time.Minute, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if idem.CompletedAs(ctx, s, "s", "done", "f", []byte("p"), time.Hour) {
		t.Fatal("a held, not yet completed key reads as completed")
	}
	if err := s.Complete(ctx, "s", "done", r.Token, []byte("p"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if !idem.CompletedAs(ctx, s, "s", "done", "f", []byte("p"), time.Hour) {
		t.Fatal("a record done with these bytes does not read as completed")
	}
	if idem.CompletedAs(ctx, s, "s", "done", "f", []byte("other"), time.Hour) {
		t.Fatal("a record done with other bytes reads as completed")
	}
	if idem.CompletedAs(ctx, s, "s", "free", "f", []byte("p"), time.Hour) {
		t.Fatal("a free key reads as completed")
	}
	if r, err := s.Claim(ctx, idem.ClaimRequest{Scope: "s", Key: "free", Fingerprint: "g", Lease: time.Minute, TTL: time.Hour}); err != nil || r.Status != idem.StatusClaimed || r.Attempt != 1 {
		t.Fatalf("the free key after the look: %v %+v, want free (a fresh claim)", err, r)
	}
}
