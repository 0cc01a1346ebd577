package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Checkpoints. In WAL mode every commit appends pages to the -wal file,
// and a checkpoint copies them back into the database file; once all of
// them are copied, the next write transaction starts the WAL over from its
// beginning. SQLite's automatic checkpoint runs inside the commit that
// crosses wal_autocheckpoint pages, so that commit, and every write queued
// behind it, waits for the copy and two fsyncs. At 2,000 requests a second
// the key store appends some 9,500 pages a second, so with the default of
// 1,000 pages that stall came ten times a second and was the store's p99.
// Other intervals only traded one for the other (through idem serve, p99:
// 100 pages 13-15 ms, 250 pages 9-11, 1,000 pages 8-11, 8,192 pages 36-38:
// rarer checkpoints each copy more and stall longer).
//
// Here the writer never checkpoints inside a commit. A checkpointer with a
// connection of its own runs PASSIVE checkpoints in the background (one
// every minGap at most), which copy pages and fsync while the writer goes
// on committing. That alone never lets the WAL start over under a steady
// stream of commits: each pass finishes behind the frames appended
// meanwhile, and the file grows without end (about 15,000 pages a second
// in TestWALBounded without the rest of this). So when the WAL file passes
// softPages, the writer asks for one more background pass at once, and
// after it has finished runs a PASSIVE checkpoint itself, between two
// commits: only the few milliseconds of commits since that pass are left
// to copy, and since nothing commits while the writer checkpoints, the WAL
// is then fully copied and the next commit starts it over (and truncates
// the file to journal_size_limit). If a reader holds an old snapshot the
// WAL cannot start over; the writer tries again every writerGap, and if
// the file passes hardPages it runs a TRUNCATE checkpoint, which waits for
// readers (busy_timeout) and empties the file: a stall, but a bounded WAL.
//
// Measured (TestCheckpointStalls, claims and completions at 2,000 a second
// for 8 s, alternating, 3 rounds each, load average 1.5-3 from other work):
// claim+completion p50 0.36-0.38 against 0.40-0.45 ms, p99 2.8-5.2 against
// 16-20 ms, p99.9 6-10 against 24-67 ms; the writer's own checkpoints took
// 3-3.5 ms each, about 2.5 a second. Letting the writer copy everything
// since the last background pass (without the urgent pass first) took 7 ms
// each and gave p99 5.6-6.8 ms; a soft limit of 16,000 pages gave p99
// 2.5-2.9 ms with a 64 MB WAL file.
type checkpointer struct {
	db                   *sql.DB // a connection of its own
	softPages, hardPages int64
	// minGap spaces background checkpoints: each costs two fsyncs, and
	// back to back they would keep the disk and a core busy for few pages.
	minGap time.Duration
	// writerGap spaces the writer's own checkpoints: while a reader holds
	// an old snapshot the WAL cannot start over, and retrying after every
	// commit would stall every commit.
	writerGap time.Duration
	walPath   string

	mu          sync.Mutex // one checkpoint at a time: a second one only gets SQLITE_BUSY
	kick        chan struct{}
	urgentKick  chan struct{}
	quit        chan struct{}
	done        chan struct{}
	writerTried time.Time // only batches use it, and they run one at a time
	// urgent asks the background for a pass now, without minGap; ready
	// says that pass has finished, so the writer's own will be short.
	urgent, ready atomic.Bool
	// stats, for tests and logs
	background, writerRuns, truncates, writerTime atomic.Int64
}

const (
	// 48,000 pages: a WAL file of about 200 MB (4 KiB pages) under
	// sustained load, and the writer's own checkpoint (each 2-2.5 ms,
	// commits wait) about every 5 s at 2,000 requests a second. Under
	// light load background passes keep up and the WAL starts over long
	// before. Through idem serve at 2,000 req/s (bench/serve-ab.sh):
	//   - against 4,000 pages (every 0.4 s), 4 rounds of 10 s, better in
	//     each, 16,000 pages gave +p99 1.56 against 2.55 ms, +p50 0.14
	//     against 0.21 ms, 356 against 372 µs of CPU a request;
	//   - against 16,000 pages (every 1.4 s), 6 rounds of 20 s, 48,000
	//     was better in 5: +p99 median 1.37 against 1.75 ms; replays
	//     (p50 0.77 against 0.79 ms) did not suffer from the longer WAL.
	defaultSoftPages = 48000
	// Past 4 times that (about 800 MB; only when a reader holds an old
	// snapshot) the writer stops everything to empty it.
	defaultHardPages = 192000
)

func openCheckpointer(ctx context.Context, path string) (*checkpointer, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(30000)")
	q.Add("_pragma", "wal_autocheckpoint(0)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	c := &checkpointer{db: db, softPages: defaultSoftPages, hardPages: defaultHardPages, minGap: 50 * time.Millisecond, writerGap: 10 * time.Millisecond, walPath: path + "-wal",
		kick: make(chan struct{}, 1), urgentKick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

// committed tells the checkpointer that the writer committed.
func (c *checkpointer) committed() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.kick:
		case <-c.quit:
			return
		}
		urgent := c.urgent.Load()
		c.mu.Lock()
		_, _, err := checkpoint(context.Background(), c.db, "PASSIVE")
		c.mu.Unlock()
		if err == nil {
			c.background.Add(1)
		}
		if urgent {
			c.urgent.Store(false)
			c.ready.Store(true)
		}
		select {
		case <-time.After(c.minGap):
		case <-c.urgentKick:
		case <-c.quit:
			return
		}
	}
}

// checkpoint runs PRAGMA wal_checkpoint(mode) and returns the frames in the
// WAL and how many of them are now copied into the database.
func checkpoint(ctx context.Context, db interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, mode string) (frames, copied int64, err error) {
	var busy int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &frames, &copied); err != nil {
		return 0, 0, fmt.Errorf("wal_checkpoint(%s): %w", mode, err)
	}
	return frames, copied, nil
}

// afterCommit runs on the writer after each commit, on the writer's
// connection db. It costs one stat of the WAL file unless the WAL is past
// its bounds. The file's size tells how far the WAL reaches: it only
// shrinks when a commit starts the WAL over and truncates the file to
// journal_size_limit, which is the soft limit, so a file larger than that
// holds more than softPages frames.
func (c *checkpointer) afterCommit(db *sql.DB) {
	fi, err := os.Stat(c.walPath)
	if err != nil || fi.Size() <= walBytes(c.softPages) {
		return
	}
	ctx := context.Background()
	if fi.Size() > walBytes(c.hardPages) {
		c.mu.Lock()
		_, _, err := checkpoint(ctx, db, "TRUNCATE")
		c.mu.Unlock()
		if err == nil {
			c.truncates.Add(1)
		}
		return
	}
	now := time.Now()
	if now.Sub(c.writerTried) < c.writerGap {
		return
	}
	if !c.ready.Load() {
		// First a background pass, started now, copies what piled up
		// since the last one while the writer goes on; the writer's own
		// pass after it then has only a few milliseconds of commits to
		// copy.
		if !c.urgent.Swap(true) {
			select {
			case c.urgentKick <- struct{}{}:
			default:
			}
			c.committed()
		}
		return
	}
	// The background checkpoint is running: it will be done soon, and
	// the writer tries after a later commit rather than wait for it.
	if !c.mu.TryLock() {
		return
	}
	c.ready.Store(false)
	c.writerTried = now
	_, _, err = checkpoint(ctx, db, "PASSIVE")
	c.mu.Unlock()
	if err == nil {
		c.writerRuns.Add(1)
		c.writerTime.Add(int64(time.Since(now)))
	}
}

// walBytes is the size of a WAL file holding pages frames of 4 KiB pages.
func walBytes(pages int64) int64 { return 32 + pages*(4096+24) }

func (c *checkpointer) close() error {
	close(c.quit)
	<-c.done
	return c.db.Close()
}
