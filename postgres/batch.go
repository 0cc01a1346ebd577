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
// takes every write queued when one of its workers wakes up and sends them
// as one pgx batch: at most one statement per kind, each over unnest()ed
// arrays, all in the batch's implicit transaction, so one commit and one
// WAL flush cover all of them. No write waits for a batch to fill; at low
// load a batch holds one write.
//
// One worker: while its batch waits for the WAL flush, the next batch
// collects everything that arrives, so each flush covers all the writes of
// one flush interval — the classic group commit. Measured at 2,000
// requests a second on two shared cores (claim+completion p50/p99 in ms):
// 1 worker 0.7+0.9 / 6+6, 2 workers 1.0+1.2 / 8-45, 4 workers 0.9+1.0 /
// 9-11, 8 workers 1.1+1.3 / 24-29: concurrent batches each paid their own
// flush and their backends competed for the same cores.
const (
	batchWorkers = 1
	maxBatch     = 256
)

type opKind int

const (
	opComplete opKind = iota
	opRelease
	opExtend
	opClaim // last: a claim in the same batch as a release of its key finds the key free
	nKinds
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
	var kinds [nKinds][]*op
	var alone []*op // a second write to one key: runs by itself after the batch
	seen := make(map[key2]opKind, len(batch))
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
		if _, dup := seen[k]; dup {
			alone = append(alone, o)
			continue
		}
		seen[k] = o.kind
		kinds[o.kind] = append(kinds[o.kind], o)
	}
	if len(seen) > 0 {
		// The batch lives as long as its most patient caller.
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if !patient {
			ctx, cancel = context.WithDeadline(ctx, deadline)
		}
		err := b.send(ctx, &kinds)
		cancel()
		var pgErr *pgconn.PgError
		for _, ops := range kinds {
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
	}
	for _, o := range alone {
		b.single(o)
	}
}

// send queues one statement per kind present and reads their results.
func (b *batcher) send(ctx context.Context, kinds *[nKinds][]*op) error {
	var pb pgx.Batch
	var order []opKind
	for k, ops := range kinds {
		if len(ops) == 0 {
			continue
		}
		n := len(ops)
		scopes, keys, tokens := make([]string, n), make([]string, n), make([]string, n)
		for i, o := range ops {
			scopes[i], keys[i], tokens[i] = o.scope, o.key, o.token
		}
		switch opKind(k) {
		case opClaim:
			fps, leases, ttls := make([]string, n), make([]int64, n), make([]int64, n)
			for i, o := range ops {
				fps[i], leases[i], ttls[i] = o.fp, o.lease, o.ttl
			}
			pb.Queue(batchInsert, scopes, keys, fps, tokens, leases, ttls)
		case opComplete:
			payloads, ttls := make([][]byte, n), make([]int64, n)
			for i, o := range ops {
				payloads[i], ttls[i] = o.payload, o.ttl
			}
			pb.Queue(batchComplete, scopes, keys, tokens, payloads, ttls)
		case opRelease:
			pb.Queue(batchRelease, scopes, keys, tokens)
		case opExtend:
			leases := make([]int64, n)
			for i, o := range ops {
				leases[i] = o.lease
			}
			pb.Queue(batchExtend, scopes, keys, tokens, leases)
		}
		order = append(order, opKind(k))
	}
	b.trips.Add(1)
	br := b.pool.SendBatch(ctx, &pb)
	for _, k := range order {
		ops := kinds[k]
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return err
		}
		if k == opClaim {
			byToken := make(map[string]*op, len(ops))
			for _, o := range ops {
				byToken[o.token] = o
			}
			var tok string
			var attempt int
			_, err = pgx.ForEachRow(rows, []any{&tok, &attempt}, func() error {
				if o := byToken[tok]; o != nil {
					o.ok, o.attempt = true, attempt
				}
				return nil
			})
		} else {
			var i int64
			_, err = pgx.ForEachRow(rows, []any{&i}, func() error {
				if i >= 1 && int(i) <= len(ops) {
					ops[i-1].ok = true
				}
				return nil
			})
		}
		if err != nil {
			br.Close()
			return err
		}
	}
	// Close reads the end of the implicit transaction: only after it has
	// returned without error is the batch committed.
	if err := br.Close(); err != nil {
		for _, ops := range kinds {
			for _, o := range ops {
				o.ok = false
			}
		}
		return err
	}
	return nil
}

// single runs one write in a statement of its own.
func (b *batcher) single(o *op) {
	defer close(o.done)
	var tag pgconn.CommandTag
	switch o.kind {
	case opClaim:
		o.err = b.pool.QueryRow(o.ctx, pgInsert, o.scope, o.key, o.fp, o.token, o.lease, o.ttl).Scan(&o.attempt)
		o.ok = o.err == nil
		if errors.Is(o.err, pgx.ErrNoRows) {
			o.err = nil
		}
		return
	case opComplete:
		tag, o.err = b.pool.Exec(o.ctx, pgComplete, o.scope, o.key, o.token, o.payload, o.ttl)
	case opRelease:
		tag, o.err = b.pool.Exec(o.ctx, pgRelease, o.scope, o.key, o.token)
	case opExtend:
		tag, o.err = b.pool.Exec(o.ctx, pgExtend, o.scope, o.key, o.token, o.lease)
	}
	o.ok = o.err == nil && tag.RowsAffected() > 0
}

// The batch statements apply the single statements' conditions row by
// row. An INSERT that meets its own key twice keeps the first row (ON
// CONFLICT DO NOTHING), but run() never sends one key twice anyway.
const (
	batchInsert = `INSERT INTO idem_keys (scope, key, fingerprint, token, done, attempt, lease_until, expires_at)
SELECT v.scope, v.key, v.fp, v.token, false, 1,
	statement_timestamp() + v.lease * interval '1 millisecond', statement_timestamp() + v.ttl * interval '1 millisecond'
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS v(scope, key, fp, token, lease, ttl)
ON CONFLICT (scope, key) DO NOTHING
RETURNING token, attempt`
	batchComplete = `UPDATE idem_keys k SET done = true, token = '', payload = v.payload,
	completed_at = statement_timestamp(), expires_at = statement_timestamp() + v.ttl * interval '1 millisecond'
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[]) WITH ORDINALITY AS v(scope, key, token, payload, ttl, i)
WHERE k.scope = v.scope AND k.key = v.key AND k.token = v.token AND NOT k.done AND k.expires_at > statement_timestamp()
RETURNING v.i`
	batchRelease = `DELETE FROM idem_keys k
USING unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS v(scope, key, token, i)
WHERE k.scope = v.scope AND k.key = v.key AND k.token = v.token AND NOT k.done AND k.expires_at > statement_timestamp()
RETURNING v.i`
	batchExtend = `UPDATE idem_keys k SET lease_until = statement_timestamp() + v.lease * interval '1 millisecond'
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS v(scope, key, token, lease, i)
WHERE k.scope = v.scope AND k.key = v.key AND k.token = v.token AND NOT k.done AND k.expires_at > statement_timestamp()
RETURNING v.i`
)
