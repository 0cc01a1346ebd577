// Package redis is an idem.KeyStore in Redis (go-redis v9), for `idem once`
// and `idem serve` across many machines. Every state change is one Lua
// script, so a claim, a takeover or a fenced completion is atomic on the
// server; deadlines use the server's clock (TIME), so clients with skewed
// clocks agree. Concurrent calls share round trips (see pipeliner).
//
// Durability depends on the server: with appendonly yes and appendfsync
// everysec a crash can forget about one second of claims and completions
// (a retry in that window may run again); appendfsync always closes that
// window at the cost of an fsync per write; without persistence (the
// default of many installs) a restart forgets every key.
package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemhq/idem"
	batchq "github.com/idemhq/idem/internal/batch"
	goredis "github.com/redis/go-redis/v9"
)

// KeyStore keeps one hash per key, named prefix + len(scope) + ":" + scope
// + key (the length makes scope/key splits unambiguous), expiring with the
// record's TTL.
type KeyStore struct {
	c      *goredis.Client
	prefix string
	url    string
	// calls are sent in pipelines, whatever is queued as one (see
	// Pipelining), each on the goroutine of one of its callers.
	calls     batchq.Group[*call]
	closeOnce sync.Once
	trips     atomic.Uint64 // pipelines sent, for tests
}

var _ idem.KeyStore = (*KeyStore)(nil)

// Open connects to a redis://[user:pass@]host:port/db URL. An extra query
// parameter prefix=… sets the key prefix (default "idem:"), so several
// applications or tests can share one database.
func Open(ctx context.Context, raw string) (*KeyStore, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, idem.BadInput("malformed redis URL %s", idem.RedactURL(raw))
	}
	q := u.Query()
	prefix := "idem:"
	if q.Has("prefix") {
		prefix = q.Get("prefix")
		q.Del("prefix")
		u.RawQuery = q.Encode()
	}
	opt, err := goredis.ParseURL(u.String())
	if err != nil {
		return nil, idem.BadInput("redis URL %s: %v", idem.RedactURL(raw), err)
	}
	// No automatic retries: a claim whose reply was lost may have been
	// applied, and retrying it would find the key held by ourselves. The
	// caller sees the error and fails closed instead.
	opt.MaxRetries = -1
	// Fail fast when the server is gone: callers answer 503 or exit 1
	// rather than hang, and retry themselves.
	opt.DialerRetries = 1
	if opt.DialTimeout == 0 {
		opt.DialTimeout = 2 * time.Second
	}
	quietOnce.Do(func() {
		// go-redis prints pool errors to stderr through a package-level
		// logger; every error also reaches our caller, who reports it once.
		goredis.SetLogger(quiet{})
	})
	c := goredis.NewClient(opt)
	s := &KeyStore{c: c, prefix: prefix, url: raw}
	s.calls.Max, s.calls.Run = maxBatch, s.send
	if err := s.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// Pipelining. go-redis sends each command on a connection of its own
// and waits for its reply, so every claim and completion costs a write
// and a read syscall on both ends and a wake-up of the server. With the
// proxy, its upstream and Redis sharing two cores, that per-command cost
// was what fell behind at 2,000 requests a second: queues formed and p99
// reached hundreds of milliseconds. go-redis has no automatic pipelining,
// so it is done here (batch.Group): a caller that finds no pipeline in
// flight sends its call together with every call queued behind it as one
// pipeline (one write, one read, one server wake-up for all of them), and
// hands the next pipeline to the first caller that queued meanwhile. No
// call waits for a batch to fill; at low load a pipeline is one command,
// sent from its caller's goroutine. Each script is still atomic on the
// server; a pipeline only shares the round trip, and a failed round trip
// fails every call in it (callers fail closed, as before).
const maxBatch = 256

// call is one script run and, once its pipeline has run, its reply.
type call struct {
	ctx  context.Context
	sc   *script
	keys []string
	args []any
	val  any
	err  error
}

type script struct {
	src, sha string
}

func newScript(src string) *script {
	return &script{src: src, sha: goredis.NewScript(src).Hash()}
}

var errClosed = errors.New("key store closed")

// run sends a script run in the next pipeline and returns its reply.
func (s *KeyStore) run(ctx context.Context, sc *script, keys []string, args ...any) (any, error) {
	c := &call{ctx: ctx, sc: sc, keys: keys, args: args}
	if err := s.calls.Do(ctx, c); err != nil {
		if errors.Is(err, batchq.ErrClosed) {
			err = errClosed
		}
		return nil, err
	}
	return c.val, c.err
}

// send runs a batch as one pipeline. A call whose caller gave up before
// it was sent is dropped unsent.
func (s *KeyStore) send(batch []*call) {
	// The round trip is bounded by the client's read and write timeouts;
	// a caller's deadline only bounds its own wait.
	ctx := context.Background()
	live := batch[:0:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.Cmd, len(live))
	for i, c := range live {
		cmds[i] = pipe.EvalSha(ctx, c.sc.sha, c.keys, c.args...)
	}
	s.trips.Add(1)
	pipe.Exec(ctx) // errors are per command
	var again []int
	for i, cmd := range cmds {
		if goredis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			again = append(again, i) // not run: the server lost its script cache
		}
	}
	if len(again) > 0 {
		// EVAL with the source runs the script and caches it again.
		pipe := s.c.Pipeline()
		for _, i := range again {
			cmds[i] = pipe.Eval(ctx, live[i].sc.src, live[i].keys, live[i].args...)
		}
		s.trips.Add(1)
		pipe.Exec(ctx)
	}
	for i, c := range live {
		c.val, c.err = cmds[i].Val(), cmds[i].Err()
	}
}

var quietOnce sync.Once

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func (s *KeyStore) name(scope, key string) string {
	return s.prefix + strconv.Itoa(len(scope)) + ":" + scope + key
}

func (s *KeyStore) storeErr(op string, err error) error {
	if err == nil || errors.Is(err, idem.ErrLost) {
		return err
	}
	msg := err.Error()
	if u, perr := url.Parse(s.url); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "***")
		}
	}
	return &idem.StoreError{Op: "redis " + op, Err: errors.New(msg)}
}

// The scripts share a preamble computing the server's time in ms.
const nowLua = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// claimScript: KEYS[1] record; ARGV fingerprint, token, lease ms, ttl ms,
// takeover (1/0). Replies {status, attempt, ...}: 1 claimed, 2 done (+
// completed ms, payload), 3 held (+ ms left), 4 mismatch, 5 abandoned.
var claimScript = newScript(nowLua + `
local r = redis.call('HMGET', KEYS[1], 'fp', 'done', 'att', 'lease', 'at', 'p')
if not r[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'tok', ARGV[2], 'done', '0', 'att', '1',
    'lease', string.format('%d', now + tonumber(ARGV[3])))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {1, 1}
end
local att = tonumber(r[3])
if r[1] ~= ARGV[1] then return {4, att} end
if r[2] == '1' then return {2, att, tonumber(r[5]), r[6]} end
local left = tonumber(r[4]) - now
if left > 0 then return {3, att, left} end
if ARGV[5] ~= '1' then return {5, att} end
att = att + 1
redis.call('HSET', KEYS[1], 'tok', ARGV[2], 'att', tostring(att),
  'lease', string.format('%d', now + tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, att}
`)

// The fenced scripts act only when KEYS[1] is held by token ARGV[1].
var completeScript = newScript(nowLua + `
local r = redis.call('HMGET', KEYS[1], 'tok', 'done')
if r[1] ~= ARGV[1] or r[2] ~= '0' then return 0 end
redis.call('HSET', KEYS[1], 'done', '1', 'tok', '', 'p', ARGV[2], 'at', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

var releaseScript = newScript(`
local r = redis.call('HMGET', KEYS[1], 'tok', 'done')
if r[1] ~= ARGV[1] or r[2] ~= '0' then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// extendScript moves the record's expiry by as much as the lease moves
// (see idem.KeyStore's Extend).
var extendScript = newScript(nowLua + `
local r = redis.call('HMGET', KEYS[1], 'tok', 'done', 'lease')
if r[1] ~= ARGV[1] or r[2] ~= '0' then return 0 end
local upto = now + tonumber(ARGV[2])
local moved = upto - tonumber(r[3])
local left = redis.call('PTTL', KEYS[1])
if moved > 0 and left > 0 then redis.call('PEXPIRE', KEYS[1], left + moved) end
redis.call('HSET', KEYS[1], 'lease', string.format('%d', upto))
return 1
`)

func (s *KeyStore) Claim(ctx context.Context, req idem.ClaimRequest) (idem.ClaimResult, error) {
	tok := idem.NewToken()
	takeover := "0"
	if req.Takeover {
		takeover = "1"
	}
	reply, err := s.run(ctx, claimScript, []string{s.name(req.Scope, req.Key)},
		req.Fingerprint, tok, req.Lease.Milliseconds(), max(req.TTL.Milliseconds(), 1), takeover)
	if err != nil {
		return idem.ClaimResult{}, s.storeErr("claim", err)
	}
	v, ok := reply.([]any)
	if !ok {
		return idem.ClaimResult{}, s.storeErr("claim", fmt.Errorf("unexpected reply %v", reply))
	}
	if len(v) < 2 {
		return idem.ClaimResult{}, s.storeErr("claim", fmt.Errorf("unexpected reply %v", v))
	}
	st, _ := v[0].(int64)
	att, _ := v[1].(int64)
	r := idem.ClaimResult{Attempt: int(att)}
	switch st {
	case 1:
		r.Status, r.Token = idem.StatusClaimed, tok
	case 2:
		r.Status = idem.StatusDone
		r.Payload = []byte{}
		if len(v) > 3 {
			at, _ := v[2].(int64)
			r.CompletedAt = time.UnixMilli(at)
			if p, ok := v[3].(string); ok {
				r.Payload = []byte(p)
			}
		}
	case 3:
		r.Status = idem.StatusHeld
		if len(v) > 2 {
			left, _ := v[2].(int64)
			r.LeaseLeft = time.Duration(left) * time.Millisecond
		}
	case 4:
		r.Status = idem.StatusMismatch
	case 5:
		r.Status = idem.StatusAbandoned
	default:
		return idem.ClaimResult{}, s.storeErr("claim", fmt.Errorf("unexpected status %v", v[0]))
	}
	return r, nil
}

func (s *KeyStore) fenced(ctx context.Context, op string, sc *script, scope, key string, args ...any) error {
	reply, err := s.run(ctx, sc, []string{s.name(scope, key)}, args...)
	if err != nil {
		return s.storeErr(op, err)
	}
	n, ok := reply.(int64)
	if !ok {
		return s.storeErr(op, fmt.Errorf("unexpected reply %v", reply))
	}
	if n == 0 {
		return idem.ErrLost
	}
	return nil
}

func (s *KeyStore) Complete(ctx context.Context, scope, key, token string, payload []byte, ttl time.Duration) error {
	if payload == nil {
		payload = []byte{}
	}
	return s.fenced(ctx, "complete", completeScript, scope, key, token, payload, max(ttl.Milliseconds(), 1))
}

func (s *KeyStore) Release(ctx context.Context, scope, key, token string) error {
	return s.fenced(ctx, "release", releaseScript, scope, key, token)
}

func (s *KeyStore) Extend(ctx context.Context, scope, key, token string, lease time.Duration) error {
	return s.fenced(ctx, "extend", extendScript, scope, key, token, lease.Milliseconds())
}

func (s *KeyStore) Ping(ctx context.Context) error {
	return s.storeErr("ping", s.c.Ping(ctx).Err())
}

func (s *KeyStore) Close() error {
	s.closeOnce.Do(func() {
		s.calls.Close()
	})
	return s.c.Close()
}

func (s *KeyStore) String() string { return idem.RedactURL(s.url) }
