package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	batchq "github.com/idemhq/idem/internal/batch"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Group commit. A claim and a completion each need a durable commit, and
// with one statement per commit the store needed a backend round trip, a
// commit record and a wait for the WAL flush per request: on two shared
// cores that topped out near 1,400 requests a second. A batcher instead
// takes every write queued when one of its workers wakes up and sends
// their statements in one pipeline, all in the pipeline's implicit
// transaction, so one round trip, one commit and one WAL flush cover all
// of them. No write waits for a batch to fill; at low load a batch holds
// one write.
//
// One worker: while its batch waits for the WAL flush, the next batch
// collects everything that arrives, so each flush covers all the writes of
// one flush interval — the classic group commit. A second worker, measured
// again with the statements of send() (idem serve at 2,000 req/s, median
// of 3 rounds, bench/serve-ab.sh), gave the same p50 (+2.08 against +2.01
// ms) and a worse p99 (+7.5 against +6.1 ms): on two cores the concurrent
// batches' backends compete with the proxy for the CPU.
const (
	batchWorkers = 1
	maxBatch     = 256
)

type opKind int

const (
	opComplete opKind = iota
	opRelease
	opExtend
	opClaim
)

// op is one write waiting for a batcher.
type op struct {
	ctx                   context.Context
	kind                  opKind
	scope, key, token, fp string
	payload               []byte
	lease, ttl            int64 // ms
	ok                    bool  // a row was inserted or changed
	attempt               int   // of an inserted claim
	err                   error
	done                  chan struct{}
}

type batcher struct {
	pool    *pgxpool.Pool
	ops     chan *op
	quit    chan struct{}
	workers sync.WaitGroup
	trips   atomic.Uint64 // batches sent, for tests
}

func newBatcher(pool *pgxpool.Pool) *batcher {
	b := &batcher{pool: pool, ops: make(chan *op, 1024), quit: make(chan struct{})}
	for range batchWorkers {
		b.workers.Add(1)
		go b.work()
	}
	return b
}

func (b *batcher) close() {
	close(b.quit)
	b.workers.Wait()
}

var errClosed = errors.New("key store closed")

// do queues o and waits for its result.
func (b *batcher) do(ctx context.Context, o *op) error {
	o.ctx, o.done = ctx, make(chan struct{})
	select {
	case b.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.quit:
		return errClosed
	}
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		// The write may still commit: the caller fails closed, and a
		// claim it made ends with its lease.
		return ctx.Err()
	case <-b.quit:
		select {
		case <-o.done:
			return o.err
		default:
			return errClosed
		}
	}
}

func (b *batcher) work() {
	defer b.workers.Done()
	batch := make([]*op, 0, maxBatch)
	for {
		select {
		case o := <-b.ops:
			batch = append(batch[:0], o)
		case <-b.quit:
			return
		}
		b.run(batchq.Drain(batch, b.ops, maxBatch))
	}
}

type key2 struct{ scope, key string }

// run commits one batch and answers every op in it.
func (b *batcher) run(batch []*op) {
	// One write per key in a batch, so their order within it cannot
	// matter; a second write to a key runs by itself after the batch.
	var ops, alone []*op
	seen := make(map[key2]bool, len(batch))
	var deadline time.Time
	patient := false // a caller without a deadline
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			// The caller gave up before the write was sent: a claim sent
			// now would hold a key that nobody uses until its lease ends.
			o.err = err
			close(o.done)
			continue
		}
		if d, ok := o.ctx.Deadline(); !ok {
			patient = true
		} else if d.After(deadline) {
			deadline = d
		}
		k := key2{o.scope, o.key}
		if seen[k] {
			alone = append(alone, o)
			continue
		}
		seen[k] = true
		ops = append(ops, o)
	}
	if len(ops) > 0 {
		// The batch lives as long as its most patient caller.
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if !patient {
			ctx, cancel = context.WithDeadline(ctx, deadline)
		}
		err := b.send(ctx, ops)
		cancel()
		var pgErr *pgconn.PgError
		for _, o := range ops {
			if errors.As(err, &pgErr) {
				// Rolled back: nothing was written. Run it alone.
				b.single(o)
				continue
			}
			o.err = err
			close(o.done)
		}
	}
	for _, o := range alone {
		b.single(o)
	}
}

// send queues every op's own statement in one pipeline. Sent as one
// batch they share the implicit transaction, so one commit and one WAL
// flush still cover them all. One statement per op rather than one
// unnest() statement per kind of write: the single-row statements' cached generic
// plans are index lookups on the primary key whatever the table held when
// they were prepared, so they need no planning per call. The unnest()
// joins did: their generic plan, made while the table was empty, scanned
// it whole, and planning them afresh cost 0.15 ms a statement, which at
// 2,000 requests a second was most of a batch's server time.
func (b *batcher) send(ctx context.Context, ops []*op) error {
	var pb pgx.Batch
	for _, o := range ops {
		sql, args := o.statement()
		pb.Queue(sql, args...)
	}
	b.trips.Add(1)
	br := b.pool.SendBatch(ctx, &pb)
	for _, o := range ops {
		if err := o.read(br); err != nil {
			br.Close()
			return err
		}
	}
	// Close reads the end of the implicit transaction: only after it has
	// returned without error is the batch committed.
	if err := br.Close(); err != nil {
		for _, o := range ops {
			o.ok = false
		}
		return err
	}
	return nil
}

// statement is o's single-row write.
func (o *op) statement() (string, []any) {
	switch o.kind {
	case opClaim:
		return pgInsert, []any{o.scope, o.key, o.fp, o.token, o.lease, o.ttl}
	case opComplete:
		return pgComplete, []any{o.scope, o.key, o.token, o.payload, o.ttl}
	case opRelease:
		return pgRelease, []any{o.scope, o.key, o.token}
	default:
		return pgExtend, []any{o.scope, o.key, o.token, o.lease}
	}
}

// read takes o's result: whether its row was inserted or changed. It
// starts from "not written": an op re-run alone after its batch was rolled
// back must not keep the ok of the rolled-back statement, or a claim that
// now finds the key taken by another caller would report it claimed.
func (o *op) read(r pgx.BatchResults) error {
	o.ok, o.attempt = false, 0
	if o.kind == opClaim {
		err := r.QueryRow().Scan(&o.attempt)
		if errors.Is(err, pgx.ErrNoRows) { // the key exists
			return nil
		}
		o.ok = err == nil
		return err
	}
	tag, err := r.Exec()
	o.ok = err == nil && tag.RowsAffected() > 0
	return err
}

// single runs one write in a transaction of its own.
func (b *batcher) single(o *op) {
	defer close(o.done)
	var pb pgx.Batch
	sql, args := o.statement()
	pb.Queue(sql, args...)
	br := b.pool.SendBatch(o.ctx, &pb)
	o.err = o.read(br)
	if err := br.Close(); o.err == nil {
		o.err = err
	}
	if o.err != nil {
		o.ok = false
	}
}
