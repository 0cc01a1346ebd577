package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemhq/idem"
	batchq "github.com/idemhq/idem/internal/batch"
	"github.com/idemhq/idem/internal/recent"
)

// KeyStore is an idem.KeyStore in a SQLite file (table idem_keys), the
// embedded default for `idem once` and `idem serve`.
//
// Durability: WAL with synchronous=NORMAL. A commit survives a crash of
// any process; only a power loss or OS crash can lose the last commits
// (not corrupt the file). Losing a completed key means one request could
// run again after a power cut; a claim can also be lost that way, but the
// work it guarded died with the machine. synchronous=FULL would close that
// window at the cost of an fsync per claim and per completion.
type KeyStore struct {
	db *sql.DB // the one writing connection
	// reads has connections of its own: in WAL mode a reader sees the last
	// commit without waiting for the writer, so a claim's read (and a
	// replay) no longer queues behind a group commit.
	reads *sql.DB
	path  string
	// Prepared once: parsing SQL was a fifth of the CPU of a claim.
	claim, read, complete, release, extend *sql.Stmt

	// writes are committed in batches, whatever is queued in one
	// transaction (group commit): a commit's syscalls, not the statements,
	// were most of a write's cost. A batch runs on the goroutine of one of
	// its callers (batch.Group), not on a writer goroutine of its own:
	// through idem serve at 2,000 req/s (bench/serve-ab.sh, 4 rounds) that
	// was 7.2 against 8.6 context switches a request. A write whose caller
	// gives up while it is queued is dropped instead of run later, so a
	// claim nobody waits for any more no longer holds its key for a lease.
	writes    batchq.Group[*writeOp]
	ckpt      *checkpointer
	closeOnce sync.Once
	ops       atomic.Uint64
	sweep     atomic.Bool
	// cursor is where the sweep's walk through the primary key goes on:
	// the last key it read, or the start when wrapped. Only the one sweep
	// running (sweep is its flag) touches it.
	cursor struct {
		scope, key string
		wrapped    bool
	}
	recent *recent.Keys
}

var _ idem.KeyStore = (*KeyStore)(nil)

const keysDDL = `CREATE TABLE IF NOT EXISTS idem_keys (
	scope       TEXT NOT NULL,
	key         TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	token       TEXT NOT NULL,
	done        INTEGER NOT NULL,
	attempt     INTEGER NOT NULL,
	lease_until INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	completed_at INTEGER,
	payload     BLOB,
	PRIMARY KEY (scope, key)
) WITHOUT ROWID;
DROP INDEX IF EXISTS idem_keys_expires;`

// The table has no index on expires_at (files made before had one; it is
// dropped on open). Each claim and completion changed that index as well
// as the row, so every commit wrote one or two more pages to the WAL and
// every checkpoint copied them back. Through idem serve at 2,000 req/s
// (bench/serve-ab.sh, 4 rounds of 20 s, with the sweep below), against
// the index: 322 against 353 µs of CPU a request and +p99 +1.51 against
// +2.97 ms (median), lower in every round. The sweep walks the primary
// key instead.

// OpenKeyStore opens (creating if missing) the key store in the SQLite file
// at path. One connection serves the process: SQLite has one writer anyway,
// and queueing in Go is far cheaper than SQLite's sleeping busy handler.
// Other processes on the same file wait on busy_timeout.
func OpenKeyStore(ctx context.Context, path string) (*KeyStore, error) {
	if path == "" {
		return nil, idem.BadInput("sqlite: empty path")
	}
	// Switching a new file to WAL and creating the table can meet
	// SQLITE_BUSY without the busy handler when several processes open
	// one new file at once (8 `idem once` started together): retry.
	for wait := 10 * time.Millisecond; ; wait *= 2 {
		s, err := openKeyStore(ctx, path)
		if err == nil || !strings.Contains(err.Error(), "SQLITE_BUSY") || wait > 5*time.Second {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

func openKeyStore(ctx context.Context, path string) (*KeyStore, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(30000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// The checkpointer (checkpoint.go) checkpoints instead of the commit
	// that crosses 1,000 WAL pages.
	q.Add("_pragma", "wal_autocheckpoint(0)")
	// After the WAL starts over, the first commit truncates the file to
	// this size: the checkpointer reads the WAL's reach from the file's size.
	q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walBytes(defaultSoftPages)))
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, &idem.StoreError{Op: "open sqlite " + path, Err: err}
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if _, err := db.ExecContext(ctx, keysDDL); err != nil {
		db.Close()
		return nil, &idem.StoreError{Op: "open sqlite " + path, Err: err}
	}
	rq := url.Values{}
	rq.Add("_pragma", "busy_timeout(30000)")
	rq.Add("_pragma", "query_only(1)")
	reads, err := sql.Open("sqlite", "file:"+path+"?"+rq.Encode())
	if err != nil {
		db.Close()
		return nil, &idem.StoreError{Op: "open sqlite " + path, Err: err}
	}
	reads.SetMaxOpenConns(4)
	reads.SetMaxIdleConns(4)
	reads.SetConnMaxLifetime(0)
	reads.SetConnMaxIdleTime(0)
	ckpt, err := openCheckpointer(ctx, path)
	if err != nil {
		db.Close()
		reads.Close()
		return nil, &idem.StoreError{Op: "open sqlite " + path, Err: err}
	}
	s := &KeyStore{db: db, reads: reads, path: path, ckpt: ckpt, recent: recent.New(1 << 16)}
	s.cursor.wrapped = true
	s.writes.Max = maxBatch
	s.writes.Run = s.commitBatch
	for _, p := range []struct {
		db *sql.DB
		st **sql.Stmt
		q  string
	}{{db, &s.claim, claimSQL}, {reads, &s.read, readSQL}, {db, &s.complete, completeSQL}, {db, &s.release, releaseSQL}, {db, &s.extend, extendSQL}} {
		if *p.st, err = p.db.PrepareContext(ctx, p.q); err != nil {
			ckpt.close()
			db.Close()
			reads.Close()
			return nil, &idem.StoreError{Op: "open sqlite " + path, Err: err}
		}
	}
	return s, nil
}

// writeOp is one write statement and, once its batch has run, its result.
type writeOp struct {
	st    *sql.Stmt
	args  []any
	query bool // a claim: scan RETURNING attempt instead of counting rows
	res   writeRes
}

type writeRes struct {
	attempt int
	rows    int64
	err     error
}

// maxBatch bounds one group commit, so a long queue still gets answers
// in slices.
const maxBatch = 64

func (s *KeyStore) commitBatch(batch []*writeOp) {
	s.commit(batch)
	s.ckpt.committed()
	s.ckpt.afterCommit(s.db)
}

// commit runs a batch in one transaction. Our statements only fail when
// the database does; then the batch is rolled back and each statement
// retried alone, so one bad write cannot fail the others.
func (s *KeyStore) commit(batch []*writeOp) {
	ctx := context.Background() // bounded by busy_timeout; callers' deadlines only bound their wait
	if len(batch) == 1 {
		batch[0].res = run(ctx, batch[0], batch[0].st)
		return
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		for _, op := range batch {
			op.res = writeRes{err: err}
		}
		return
	}
	for _, op := range batch {
		op.res = run(ctx, op, tx.StmtContext(ctx, op.st))
		if op.res.err != nil {
			tx.Rollback()
			for _, op := range batch {
				op.res = run(ctx, op, op.st)
			}
			return
		}
	}
	if err := tx.Commit(); err != nil {
		for _, op := range batch {
			op.res = writeRes{err: err}
		}
	}
}

func run(ctx context.Context, op *writeOp, st *sql.Stmt) writeRes {
	if op.query {
		var r writeRes
		r.err = st.QueryRowContext(ctx, op.args...).Scan(&r.attempt)
		if errors.Is(r.err, sql.ErrNoRows) {
			r.err = nil // not claimed: rows stays 0
		} else if r.err == nil {
			r.rows = 1
		}
		return r
	}
	res, err := st.ExecContext(ctx, op.args...)
	if err != nil {
		return writeRes{err: err}
	}
	n, err := res.RowsAffected()
	return writeRes{rows: n, err: err}
}

// write runs a statement in the next group commit and returns its result.
func (s *KeyStore) write(ctx context.Context, op *writeOp) writeRes {
	if err := s.writes.Do(ctx, op); err != nil {
		if errors.Is(err, batchq.ErrClosed) {
			err = errors.New("sql: database is closed")
		}
		return writeRes{err: err}
	}
	return op.res
}

func storeErr(op string, err error) error {
	if err == nil || errors.Is(err, idem.ErrLost) {
		return err
	}
	return &idem.StoreError{Op: "sqlite " + op, Err: err}
}

func nowMS() int64 { return time.Now().UnixMilli() }

const claimSQL = `INSERT INTO idem_keys (scope, key, fingerprint, token, done, attempt, lease_until, expires_at)
VALUES (?1, ?2, ?3, ?4, 0, 1, ?5 + ?6, ?5 + ?7)
ON CONFLICT (scope, key) DO UPDATE SET
	fingerprint = excluded.fingerprint, token = excluded.token, done = 0,
	attempt = CASE WHEN idem_keys.expires_at <= ?5 THEN 1 ELSE idem_keys.attempt + 1 END,
	lease_until = excluded.lease_until, expires_at = excluded.expires_at,
	payload = NULL, completed_at = NULL
WHERE idem_keys.expires_at <= ?5
   OR (?8 AND idem_keys.done = 0 AND idem_keys.lease_until <= ?5 AND idem_keys.fingerprint = excluded.fingerprint)
RETURNING attempt`

const (
	readSQL = `SELECT fingerprint, done, attempt, lease_until, expires_at, completed_at, payload
		FROM idem_keys WHERE scope = ? AND key = ?`
	completeSQL = `UPDATE idem_keys SET done = 1, token = '', payload = ?, completed_at = ?, expires_at = ?
		WHERE scope = ? AND key = ? AND token = ? AND done = 0 AND expires_at > ?`
	releaseSQL = `DELETE FROM idem_keys WHERE scope = ? AND key = ? AND token = ? AND done = 0 AND expires_at > ?`
	// Right-hand sides read the row as it was: the expiry moves by as much
	// as the lease does (see idem.KeyStore's Extend).
	extendSQL = `UPDATE idem_keys SET expires_at = expires_at + max(0, ?1 - lease_until), lease_until = ?1
WHERE scope = ?2 AND key = ?3 AND token = ?4 AND done = 0 AND expires_at > ?5`
)

// Claim chooses between two orders of the same two steps. A key this
// process has not claimed lately is most likely new, so it goes straight
// to the writer: one upsert that re-checks atomically whether the key is
// absent, expired or takeable. Only when that changes nothing is the
// record read. A key seen lately is likely a retry, so it is read first:
// replays and conflicts then take no write lock at all. Either order is
// correct for any key; the hint (internal/recent) only saves the step that
// would be wasted.
// Through idem serve at 2,000 new keys a second (bench/serve-ab.sh, median
// of 5 rounds): +p50 0.28 against 0.38 ms and 409 against 433 µs of CPU
// per request, p99 within the noise, replays unchanged (p50 0.75 ms).
func (s *KeyStore) Claim(ctx context.Context, req idem.ClaimRequest) (idem.ClaimResult, error) {
	s.maybeSweep(ctx)
	readFirst := s.recent.Seen(req.Scope, req.Key)
	for try := 0; ; try++ {
		now := nowMS()
		if readFirst || try > 0 {
			var (
				fp                  string
				done                bool
				attempt             int
				leaseUntil, expires int64
				completed           sql.NullInt64
				payload             []byte
			)
			err := s.read.QueryRowContext(ctx, req.Scope, req.Key).Scan(&fp, &done, &attempt, &leaseUntil, &expires, &completed, &payload)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return idem.ClaimResult{}, storeErr("claim", err)
			}
			if err == nil && expires > now {
				takeable := req.Takeover && !done && leaseUntil <= now && fp == req.Fingerprint
				if !takeable || try >= 5 {
					return classify(req, now, fp, done, attempt, leaseUntil, completed, payload), nil
				}
			}
		}
		tok := idem.NewToken()
		r := s.write(ctx, &writeOp{st: s.claim, query: true, args: []any{req.Scope, req.Key, req.Fingerprint, tok, now,
			req.Lease.Milliseconds(), req.TTL.Milliseconds(), req.Takeover}})
		if r.err != nil {
			return idem.ClaimResult{}, storeErr("claim", r.err)
		}
		if r.rows == 1 {
			return idem.ClaimResult{Status: idem.StatusClaimed, Token: tok, Attempt: r.attempt}, nil
		}
	}
}

// classify turns a record the claim could not take into a status.
func classify(req idem.ClaimRequest, now int64, fp string, done bool, attempt int, leaseUntil int64, completed sql.NullInt64, payload []byte) idem.ClaimResult {
	r := idem.ClaimResult{Attempt: attempt}
	switch {
	case fp != req.Fingerprint:
		r.Status = idem.StatusMismatch
	case done:
		r.Status = idem.StatusDone
		r.Payload = payload
		if r.Payload == nil {
			r.Payload = []byte{}
		}
		r.CompletedAt = time.UnixMilli(completed.Int64)
	case leaseUntil > now:
		r.Status = idem.StatusHeld
		r.LeaseLeft = time.Duration(leaseUntil-now) * time.Millisecond
	case !req.Takeover:
		r.Status = idem.StatusAbandoned
	default:
		// The lease ended between the claim statement and the read: report
		// it held for a moment, the caller retries.
		r.Status = idem.StatusHeld
		r.LeaseLeft = time.Millisecond
	}
	return r
}

func (s *KeyStore) exec(ctx context.Context, op string, st *sql.Stmt, args ...any) error {
	r := s.write(ctx, &writeOp{st: st, args: args})
	if r.err != nil {
		return storeErr(op, r.err)
	}
	if r.rows == 0 {
		return idem.ErrLost
	}
	return nil
}

func (s *KeyStore) Complete(ctx context.Context, scope, key, token string, payload []byte, ttl time.Duration) error {
	now := nowMS()
	if payload == nil {
		payload = []byte{}
	}
	return s.exec(ctx, "complete", s.complete, payload, now, now+ttl.Milliseconds(), scope, key, token, now)
}

func (s *KeyStore) Release(ctx context.Context, scope, key, token string) error {
	return s.exec(ctx, "release", s.release, scope, key, token, nowMS())
}

func (s *KeyStore) Extend(ctx context.Context, scope, key, token string, lease time.Duration) error {
	now := nowMS()
	return s.exec(ctx, "extend", s.extend, now+lease.Milliseconds(), scope, key, token, now)
}

// The sweep deletes expired records now and then, so the table does not
// grow with keys nobody asks for again. Claims replace expired records
// themselves; this is only housekeeping, and its failure is harmless.
//
// Without an index on expires_at it walks the primary key: every
// sweepEvery claims it reads the next sweepWindow records on a read
// connection (WAL readers do not hold up the writer) and deletes the
// expired ones among them in short transactions, each record only if it
// is still expired then. It reads about two records per claim, so a walk
// through the whole table takes about half as many claims as the table
// has records; a record waits about that long after it expires, and the
// table stays near at most twice its live records. Windows are small and
// frequent rather than large and rare: a read holds its snapshot while it
// runs, and while it does the WAL cannot start over (checkpoint.go); 1,024
// records take under a millisecond, 8,192 took 4-7 ms on an idle machine.
const (
	sweepEvery  = 512
	sweepWindow = 2 * sweepEvery
	sweepChunk  = 64
)

func (s *KeyStore) maybeSweep(ctx context.Context) {
	if s.ops.Add(1)%sweepEvery != 0 || !s.sweep.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.sweep.Store(false)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		s.sweepOnce(ctx, sweepWindow)
	}()
}

type pk struct{ scope, key string }

// sweepOnce reads the next window records of the walk and deletes what
// in them has expired. It returns how many records it deleted.
func (s *KeyStore) sweepOnce(ctx context.Context, window int) (int, error) {
	now := nowMS()
	var (
		rows *sql.Rows
		err  error
	)
	if s.cursor.wrapped {
		rows, err = s.reads.QueryContext(ctx, `SELECT scope, key, expires_at FROM idem_keys ORDER BY scope, key LIMIT ?`, window)
	} else {
		rows, err = s.reads.QueryContext(ctx, `SELECT scope, key, expires_at FROM idem_keys WHERE (scope, key) > (?, ?) ORDER BY scope, key LIMIT ?`,
			s.cursor.scope, s.cursor.key, window)
	}
	if err != nil {
		return 0, err
	}
	var (
		dead []pk
		last pk
		n    int
	)
	for rows.Next() {
		var expires int64
		if err := rows.Scan(&last.scope, &last.key, &expires); err != nil {
			rows.Close()
			return 0, err
		}
		n++
		if expires <= now {
			dead = append(dead, last)
		}
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	// A short window means the walk reached the end: the next starts over.
	s.cursor.scope, s.cursor.key, s.cursor.wrapped = last.scope, last.key, n < window
	return s.deleteExpired(ctx, dead)
}

// deleteExpired deletes the records of keys that are still expired, in
// transactions of sweepChunk: a claim may have taken a key since the read.
// One prepared DELETE per key: in-process SQLite has no round trip to
// save, and each is a primary-key lookup.
func (s *KeyStore) deleteExpired(ctx context.Context, keys []pk) (int, error) {
	deleted := 0
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), sweepChunk)]
		keys = keys[len(chunk):]
		n, err := func() (int, error) {
			tx, err := s.db.BeginTx(ctx, nil)
			if err != nil {
				return 0, err
			}
			defer tx.Rollback()
			st, err := tx.PrepareContext(ctx, `DELETE FROM idem_keys WHERE scope = ? AND key = ? AND expires_at <= ?`)
			if err != nil {
				return 0, err
			}
			now, n := nowMS(), 0
			for _, k := range chunk {
				res, err := st.ExecContext(ctx, k.scope, k.key, now)
				if err != nil {
					return 0, err
				}
				m, _ := res.RowsAffected()
				n += int(m)
			}
			return n, tx.Commit()
		}()
		if err != nil {
			return deleted, err
		}
		deleted += n
	}
	return deleted, nil
}

func (s *KeyStore) Ping(ctx context.Context) error {
	var n int
	return storeErr("ping", s.reads.QueryRowContext(ctx, `SELECT count(*) FROM idem_keys WHERE 0`).Scan(&n))
}

func (s *KeyStore) Close() error {
	s.closeOnce.Do(func() {
		s.writes.Close()
		s.ckpt.close()
	})
	rerr := s.reads.Close()
	// The last connection to close checkpoints the WAL into the database.
	if err := s.db.Close(); err != nil {
		return err
	}
	return rerr
}

func (s *KeyStore) String() string { return fmt.Sprintf("sqlite:%s", s.path) }
