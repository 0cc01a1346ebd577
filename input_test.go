package idem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// scriptedReader yields n records ("i", "v<i>"), then, if stall is set,
// blocks in Read until released; otherwise it ends, or fails at record
// failAt (1-based) when that is set.
type scriptedReader struct {
	n, i, failAt int
	stall        chan struct{}
	rec          []Value
}

func (r *scriptedReader) Columns() []string { return []string{"id", "v"} }
func (r *scriptedReader) Close() error      { return nil }
func (r *scriptedReader) Read() ([]Value, Pos, error) {
	if r.i >= r.n {
		if r.stall != nil {
			<-r.stall
		}
		return nil, Pos{}, io.EOF
	}
	r.i++
	pos := Pos{File: "in.csv", Line: int64(r.i + 1)}
	if r.i == r.failAt {
		return nil, pos, &InputError{File: "in.csv", Line: pos.Line, Msg: "broken record"}
	}
	// The slice is reused, as readers may do; strings are not.
	r.rec = append(r.rec[:0], V(fmt.Sprint(r.i)), V(fmt.Sprint("v", r.i)))
	return r.rec, pos, nil
}

// readingTarget is a Target whose Apply reads the input with read and
// returns what it returns.
type readingTarget struct {
	read func(in *Input) error
}

func (t *readingTarget) Describe(context.Context, string) (Schema, error) {
	return Schema{{"id", TypeInteger}, {"v", TypeText}}, nil
}
func (t *readingTarget) Apply(_ context.Context, _ *Plan, in *Input) (*Result, error) {
	return &Result{}, t.read(in)
}
func (t *readingTarget) LastRun(context.Context, string, string) (*Run, error) { return nil, nil }
func (t *readingTarget) StateToken(context.Context, string, *Partition) (string, error) {
	return "", nil
}
func (t *readingTarget) RecordSkip(context.Context, *Run) error { return nil }
func (t *readingTarget) Scan(context.Context, string, *Partition, func(Schema, Row) error) error {
	return nil
}
func (t *readingTarget) Runs(context.Context, RunFilter) ([]Run, error) { return nil, nil }
func (t *readingTarget) Close() error                                   { return nil }

func loadWith(t *testing.T, rr RecordReader, read func(*Input) error) error {
	t.Helper()
	_, err := Load(context.Background(), &readingTarget{read: read}, rr,
		LoadSpec{Table: "t", Key: []string{"id"}, Strategy: Upsert, Create: true, Dedupe: DedupeError})
	return err
}

// The read-ahead must hand out exactly what a sequential reader would:
// every row in order, with its own position and hash, across batches, and
// the fingerprint of all of them.
func TestInputReadAheadOrder(t *testing.T) {
	const n = 3*pipeBatch + 17
	err := loadWith(t, &scriptedReader{n: n}, func(in *Input) error {
		h := NewRowHasher(in.Columns())
		var fp Fingerprint
		for i := 1; ; i++ {
			row, err := in.Next()
			if err == io.EOF {
				if i != n+1 {
					return fmt.Errorf("EOF after %d rows, want %d", i-1, n)
				}
				break
			}
			if err != nil {
				return err
			}
			if row[0].S != fmt.Sprint(i) || row[1].S != fmt.Sprint("v", i) || in.Pos().Line != int64(i+1) {
				return fmt.Errorf("row %d is %v at line %d", i, row, in.Pos().Line)
			}
			want := h.Hash(row)
			if in.LastHash() != want {
				return fmt.Errorf("row %d: hash differs", i)
			}
			fp.Add(want)
		}
		if in.Fingerprint() != fp {
			return errors.New("fingerprint differs from the rows'")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A read error deep in the input comes after every row before it, and no
// row after it is handed out.
func TestInputReadAheadError(t *testing.T) {
	const failAt = 2*pipeBatch + 5
	err := loadWith(t, &scriptedReader{n: 5 * pipeBatch, failAt: failAt}, func(in *Input) error {
		rows := 0
		for {
			_, err := in.Next()
			if err != nil {
				if rows != failAt-1 {
					return fmt.Errorf("error after %d rows, want %d: %v", rows, failAt-1, err)
				}
				return err
			}
			rows++
		}
	})
	var ie *InputError
	if !errors.As(err, &ie) || ie.Line != failAt+1 {
		t.Fatalf("want the reader's error at line %d, got %v", failAt+1, err)
	}
}

// A load that fails early must return even when its reader has stalled
// (a pipe on stdin that sends nothing more): the read-ahead must not hold
// it hostage.
func TestInputReadAheadStalledReader(t *testing.T) {
	stall := make(chan struct{})
	defer close(stall)
	start := time.Now()
	err := loadWith(t, &scriptedReader{n: pipeBatch + 10, stall: stall}, func(in *Input) error {
		if _, err := in.Next(); err != nil {
			return err
		}
		return errors.New("target failed")
	})
	if err == nil || err.Error() != "target failed" {
		t.Fatalf("want the target's error, got %v", err)
	}
	if d := time.Since(start); d > parserGrace+2*time.Second {
		t.Fatalf("the failed load took %v to return", d)
	}
}
