package blob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/parquet-go/parquet-go"
)

type pqRow struct {
	ID   int64  `parquet:"id"`
	Name string `parquet:"name"`
}

// TestCorruptParquetInput: a Parquet input damaged in its second row group
// is exit 2 naming the file and the row group, and nothing is written.
func TestCorruptParquetInput(t *testing.T) {
	var b bytes.Buffer
	w := parquet.NewGenericWriter[pqRow](&b, parquet.MaxRowsPerRowGroup(100))
	rows := make([]pqRow, 300)
	for i := range rows {
		rows[i] = pqRow{ID: int64(i + 1), Name: strings.Repeat("n", i%7)}
	}
	w.Write(rows)
	w.Close()
	data := b.Bytes()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	off := f.Metadata().RowGroups[1].Columns[0].MetaData.DataPageOffset
	for i := off; i < off+12; i++ {
		data[i] ^= 0xA5
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.parquet")
	os.WriteFile(bad, data, 0o644)
	out := t.TempDir()
	r := conformance.RunCLI(t, "load", bad, "--to", "file:"+out, "--table", "t", "--key", "id")
	if r.Code != idem.ExitBadInput || !strings.Contains(r.Stderr, "bad.parquet") || !strings.Contains(r.Stderr, "row group 2") {
		t.Fatalf("want exit 2 naming bad.parquet and row group 2, got %d: %s", r.Code, r.Stderr)
	}
	if _, err := openT(t, "file:"+out).Describe(context.Background(), "t"); !errors.Is(err, idem.ErrNoTable) {
		t.Fatalf("corrupt input left a table behind: %v", err)
	}
	// The undamaged file loads, and a second run is the fast path.
	good := filepath.Join(dir, "good.parquet")
	b.Reset()
	w = parquet.NewGenericWriter[pqRow](&b, parquet.MaxRowsPerRowGroup(100))
	w.Write(rows)
	w.Close()
	os.WriteFile(good, b.Bytes(), 0o644)
	for i, want := range []string{"300 inserted", "300 unchanged"} {
		r = conformance.RunCLI(t, "load", good, "--to", "file:"+out, "--table", "t", "--key", "id")
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Fatalf("load %d of good.parquet: %d %s %s", i+1, r.Code, r.Stdout, r.Stderr)
		}
	}
}

// TestS3LockLease: a lock object left by a holder on another machine is
// respected until its lease ends, then taken over.
func TestS3LockLease(t *testing.T) {
	tg := openT(t, withParam(s3URL(t), "lease", "2s"))
	ctx := context.Background()
	key := "t/" + lockName
	foreign := func(expires time.Time) {
		b, _ := json.Marshal(lockBody{Owner: "someone", Expires: expires.UnixMilli(), Host: "another-machine", PID: 1})
		if _, err := tg.st.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	foreign(time.Now().Add(-time.Second))
	start := time.Now()
	l, err := tg.st.Lock(ctx, key, false, 5*time.Second)
	if err != nil || time.Since(start) > time.Second {
		t.Fatalf("expired foreign lock not taken over at once: %v after %v", err, time.Since(start))
	}
	l.Unlock(ctx)
	if _, err := tg.st.Get(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unlock left the lock object: %v", err)
	}
	foreign(time.Now().Add(1500 * time.Millisecond))
	if _, err := tg.st.Lock(ctx, key, false, 300*time.Millisecond); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("live foreign lock: want a lock timeout, got %v", err)
	}
	start = time.Now()
	l, err = tg.st.Lock(ctx, key, false, 5*time.Second)
	if err != nil || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("live foreign lock: acquired after %v (%v), want after its lease", time.Since(start), err)
	}
	// Renewal keeps it: after two leases it is still ours and unexpired.
	time.Sleep(4 * time.Second)
	if err := l.Lost(); err != nil {
		t.Fatal(err)
	}
	b, _ := tg.st.Get(ctx, key)
	var lb lockBody
	json.Unmarshal(b, &lb)
	if lb.Host != hostID() || time.Now().UnixMilli() > lb.Expires {
		t.Fatalf("lease not renewed: %+v", lb)
	}
	if _, err := tg.st.Lock(ctx, key, false, 200*time.Millisecond); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("second holder got a held lock: %v", err)
	}
	l.Unlock(ctx)
}

// TestS3TakeOverOfDeletedLock: a waiter reads an expired lock object, and
// before it replaces that version the holder deletes it. S3 answers the
// conditional PUT with 404 rather than 412; that is a race lost, retried
// by Lock, not a failure (it failed one of several concurrent loads with
// "_idem.lock: object not found").
func TestS3TakeOverOfDeletedLock(t *testing.T) {
	tg := openT(t, s3URL(t))
	s, ok := tg.st.(*S3)
	if !ok {
		t.Fatalf("store is %T, want *S3", tg.st)
	}
	ctx := context.Background()
	key := "t/" + lockName
	b, _ := json.Marshal(lockBody{Owner: "someone", Expires: time.Now().Add(-time.Second).UnixMilli(), Host: "another-machine", PID: 1})
	if _, err := s.Put(ctx, key, b); err != nil {
		t.Fatal(err)
	}
	_, staleTag, err := s.getTagged(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, won, err := s.takeOver(ctx, key, staleTag, []byte(`{}`)); won || err != nil {
		t.Fatalf("take-over of a deleted lock object: won %v, err %v; want lost, no error", won, err)
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the lost take-over wrote the lock object: %v", err)
	}
	// A version that was replaced is lost the same way.
	tag1, err := s.Put(ctx, key, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, key, append(b, ' ')); err != nil {
		t.Fatal(err)
	}
	if _, won, err := s.takeOver(ctx, key, tag1, []byte(`{}`)); won || err != nil {
		t.Fatalf("take-over of a replaced version: won %v, err %v; want lost, no error", won, err)
	}
	l, err := s.Lock(ctx, key, false, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock(ctx)
}
