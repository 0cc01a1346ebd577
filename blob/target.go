// Package blob is idem's target for directories of data files and
// S3-compatible object stores: Hive-style partition folders of Parquet
// (default), CSV or JSON-lines files, replaced atomically for any reader
// that follows the folder's manifest, byte-identical on rerun.
//
// # Commit protocol (one folder: a partition, or an unpartitioned table)
//
//  1. Take the lock (flock locally; a conditional-PUT lock object with a
//     lease on S3).
//  2. Read the current manifest and files, merge the input by the strategy.
//  3. Write the new files under content-addressed names
//     (part-NNNNN-<sha256 prefix>.<ext>): the same rows give the same name
//     and bytes, so a file that is already there is not written again, and
//     a new version never overwrites a file the current manifest lists.
//  4. Write _idem_manifest.json (the commit point): files, row counts,
//     fingerprints, the run and its execution date.
//  5. Append the run to the ledger folder _idem_runs/, with the state token
//     the folders in scope will have after step 6.
//  6. Delete every data file the manifests in scope do not list: the
//     previous version's and leftovers of crashed loads. The state token
//     counts unlisted files, so a load killed before this step is never
//     mistaken for done: its rerun, even with the same input, takes the
//     full path and deletes them.
//
// What readers see during a load:
//
//   - A reader that follows the manifest (idem itself; anything that reads
//     _idem_manifest.json and then exactly the files it lists) sees the old
//     version until step 4 and the new one after it, never a mix: files
//     are immutable once listed. A reader that read the old manifest and
//     is still fetching its files after step 6 gets "not found" and must
//     re-read the manifest (idem retries).
//   - A reader that lists the folder (e.g. spark.read.parquet("t/"),
//     DuckDB's read_parquet('t/*/*.parquet')) sees the old files until step
//     3 starts, old and new files together from then until step 6 ends
//     (duplicated rows), and the new files after. That window is the time
//     to upload the new files plus one manifest PUT, one ledger PUT and the
//     deletes; when the partition did not change there is no window. Locally
//     the temporary files start with "." so listing readers skip them.
//
// A load without --partition on a partitioned table commits each partition
// it changes in turn: each is atomic, the set is not.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/idemhq/idem"
)

// Target is a file: or s3:// target.
type Target struct {
	st          Store
	codec       codec
	rowsPerFile int
	// partitionBy is the column a new table is partitioned by when a
	// load names no --partition (URL option partition_by).
	partitionBy string
	// spillLimit is how many bytes of a keyless load's input are buffered
	// in memory before going to a temporary file (0: spillBuffer).
	spillLimit int
}

var (
	_ idem.Target         = (*Target)(nil)
	_ idem.RunTokenReader = (*Target)(nil)
)

// New makes a target over a store, writing files in the given format and
// compression ("" for the defaults: Parquet with snappy).
func New(st Store, format, compression string) (*Target, error) {
	c, err := checkCodec(format, compression)
	if err != nil {
		return nil, err
	}
	return &Target{st: st, codec: c, rowsPerFile: defaultRowsPerFile}, nil
}

// Open opens file:DIR or s3://bucket/prefix URLs. Options are URL query
// parameters: format=parquet|csv|jsonl, compression=none|snappy|gzip|zstd,
// rows_per_file=N (a folder's rows are split into files of at most N
// rows), partition_by=COL (a new table written without --partition is
// partitioned by COL: each row goes to its COL=value folder), and for S3 endpoint=URL, region=NAME, lease=DURATION (lock lease).
func Open(ctx context.Context, raw string) (*Target, error) {
	switch {
	case strings.HasPrefix(raw, "file:"):
		rest := strings.TrimPrefix(raw, "file:")
		rest = strings.TrimPrefix(rest, "//")
		path, query, _ := strings.Cut(rest, "?")
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, idem.BadInput("%s: bad options: %v", raw, err)
		}
		if path == "" {
			return nil, idem.BadInput("%q: file URL needs a directory, e.g. file:out or file:/data/warehouse", raw)
		}
		if err := onlyParams(q, "format", "compression", "rows_per_file", "partition_by"); err != nil {
			return nil, err
		}
		t, err := newTarget(q)
		if err != nil {
			return nil, err
		}
		if t.st, err = NewLocal(path); err != nil {
			return nil, err
		}
		return t, nil
	case strings.HasPrefix(raw, "s3://"):
		u, err := url.Parse(raw)
		if err != nil {
			return nil, idem.BadInput("malformed URL %s", idem.RedactURL(raw))
		}
		if u.User != nil {
			return nil, idem.BadInput("%s: put S3 credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, not in the URL", idem.RedactURL(raw))
		}
		if u.Host == "" {
			return nil, idem.BadInput("%s: want s3://bucket/prefix", raw)
		}
		q := u.Query()
		if err := onlyParams(q, "format", "compression", "rows_per_file", "partition_by", "endpoint", "region", "lease"); err != nil {
			return nil, err
		}
		t, err := newTarget(q)
		if err != nil {
			return nil, err
		}
		var lease time.Duration
		if s := q.Get("lease"); s != "" {
			if lease, err = time.ParseDuration(s); err != nil || lease < time.Second {
				return nil, idem.BadInput("lease=%q: want a duration of at least 1s", s)
			}
		}
		if t.st, err = NewS3(ctx, S3Options{Bucket: u.Host, Prefix: u.Path, Endpoint: q.Get("endpoint"), Region: q.Get("region"), Lease: lease}); err != nil {
			return nil, err
		}
		return t, nil
	}
	return nil, idem.BadInput("%s: not a file: or s3:// URL", idem.RedactURL(raw))
}

func newTarget(q url.Values) (*Target, error) {
	c, err := checkCodec(q.Get("format"), q.Get("compression"))
	if err != nil {
		return nil, err
	}
	t := &Target{codec: c, rowsPerFile: defaultRowsPerFile, partitionBy: q.Get("partition_by")}
	if t.partitionBy != "" {
		if err := checkPartitionValue(&idem.Partition{Column: t.partitionBy}); err != nil {
			return nil, err
		}
	}
	if s := q.Get("rows_per_file"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, idem.BadInput("rows_per_file=%q: want a positive number", s)
		}
		t.rowsPerFile = n
	}
	return t, nil
}

func onlyParams(q url.Values, known ...string) error {
	for k := range q {
		ok := false
		for _, n := range known {
			ok = ok || k == n
		}
		if !ok {
			return idem.BadInput("unknown URL option %q (known: %s)", k, strings.Join(known, ", "))
		}
	}
	return nil
}

// Store is the object store under the target.
func (t *Target) Store() Store { return t.st }

func (t *Target) Close() error { return nil }

func (t *Target) Describe(ctx context.Context, table string) (idem.Schema, error) {
	ts, err := t.readState(ctx, table)
	if err != nil {
		return nil, err
	}
	if len(ts.mans) == 0 {
		return nil, fmt.Errorf("%q: %w", table, idem.ErrNoTable)
	}
	return ts.schema, nil
}

// Scan reads the table or partition through the manifests, streaming rows
// (a folder's compressed files are held in memory, its rows are not). Each
// folder is read as one version: if a concurrent load replaces it mid-read
// (its old files vanish), the folder is read again from its new manifest.
// Different folders may be read at different versions.
func (t *Target) Scan(ctx context.Context, table string, part *idem.Partition, fn func(idem.Schema, idem.Row) error) error {
	ts, err := t.readState(ctx, table)
	if err != nil {
		return err
	}
	if len(ts.mans) == 0 {
		return fmt.Errorf("%q: %w", table, idem.ErrNoTable)
	}
	schema := ts.schema
	var pidx int
	if part != nil {
		pidx = schema.Index(part.Column)
		if pidx < 0 {
			return idem.BadInput("table %q has no column %q to partition by", table, part.Column)
		}
		v, err := idem.Canon(schema[pidx].Type, part.Value)
		if err != nil {
			return idem.BadInput("partition %s: %q %v", part.Column, part.Value, err)
		}
		part = &idem.Partition{Column: part.Column, Value: v}
	}
	segs, filter := ts.lay.scope(part)
	for _, s := range segs {
		m := ts.mans[s.dir]
		for attempt := 0; ; attempt++ {
			if m == nil {
				break
			}
			// readRows fetches and checks every file before it returns a
			// row, so a replaced version fails before anything was passed
			// on, and the folder can be read again from its new manifest.
			emitted := false
			err := t.readRows(ctx, table, s, m, schema, func(r idem.Row) error {
				emitted = true
				if filter && (r[pidx].Null || r[pidx].S != part.Value) {
					return nil
				}
				return fn(schema, r)
			})
			if !emitted && (errors.Is(err, ErrNotFound) || errors.Is(err, errChanged)) && attempt < 5 {
				if m, _, err = t.readManifest(ctx, table, s); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			break
		}
	}
	return nil
}

// StateToken summarises, for each folder in scope, the files its manifest
// lists with their current size and ETag (modification time locally), and
// any data or temporary file in the folder that the manifest does not list
// (left by a crashed or failed load), so any rewrite, deletion, new commit
// or leftover changes it. A folder with leftovers thus never matches the
// token a completed load recorded, and its rerun takes the full path, which
// removes them. It costs one manifest GET and one LIST per folder, issued
// side by side, and one LIST of the table.
func (t *Target) StateToken(ctx context.Context, table string, part *idem.Partition) (string, error) {
	pieces, err := t.statePieces(ctx, table, part)
	if err != nil {
		return "", err
	}
	return tokenOf(pieces, false), nil
}

// statePieces fetches the manifest and listing of every folder in scope.
func (t *Target) statePieces(ctx context.Context, table string, part *idem.Partition) ([]*segPiece, error) {
	// A partition load's folder is known before the table is listed (when
	// the table is partitioned by that column, as it is in the common
	// case): fetch it at the same time as the listing.
	var guess *segPiece
	var wg sync.WaitGroup
	if part != nil {
		guess = &segPiece{seg: segment{dir: segDir(part.Column, idem.V(part.Value))}}
		wg.Add(1)
		go func() { defer wg.Done(); t.fetchPiece(ctx, table, guess) }()
	}
	lay, err := t.readLayout(ctx, table)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	// The partition value is as the user spelt it: a non-canonical
	// spelling names no folder and only misses the fast path.
	segs, _ := lay.scope(part)
	pieces := make([]*segPiece, len(segs))
	for i, s := range segs {
		if guess != nil && s.dir == guess.seg.dir {
			pieces[i] = guess
			continue
		}
		pieces[i] = &segPiece{seg: s}
	}
	sem := make(chan struct{}, 8)
	for _, p := range pieces {
		if p == guess {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() { defer func() { <-sem; wg.Done() }(); t.fetchPiece(ctx, table, p) }()
	}
	wg.Wait()
	any := false
	for _, p := range pieces {
		if p.err != nil {
			return nil, p.err
		}
		any = any || p.m != nil
	}
	if !any && len(lay.all()) == 0 {
		return nil, fmt.Errorf("%q: %w", table, idem.ErrNoTable)
	}
	return pieces, nil
}

// tokenOf hashes the pieces into a state token. withoutStale leaves out
// the folders' unlisted files: the token as it will be once they are
// deleted, which a load records before deleting them.
func tokenOf(pieces []*segPiece, withoutStale bool) string {
	h := sha256.New()
	for _, p := range pieces {
		writeTokenPiece(h, p.seg, p.m, p.objs, withoutStale)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// segPiece is what the state token needs of one folder.
type segPiece struct {
	seg  segment
	m    *manifest
	objs []Object
	err  error
}

func (t *Target) fetchPiece(ctx context.Context, table string, p *segPiece) {
	var wg sync.WaitGroup
	var lerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.objs, _, lerr = t.st.List(ctx, tableDir(table)+p.seg.dir)
	}()
	p.m, _, p.err = t.readManifest(ctx, table, p.seg)
	wg.Wait()
	if p.err == nil {
		p.err = lerr
	}
}

// LastRunAndToken fetches the newest run and the state token side by side
// (idem.RunTokenReader): on S3 each is a few round trips, and the rerun
// fast path needs both.
func (t *Target) LastRunAndToken(ctx context.Context, table string, part *idem.Partition) (*idem.Run, string, error) {
	var tok string
	var terr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		tok, terr = t.StateToken(ctx, table, part)
	}()
	run, err := t.LastRun(ctx, table, part.String())
	<-done
	if err != nil {
		return nil, "", err
	}
	if errors.Is(terr, idem.ErrNoTable) {
		return run, "", nil
	}
	if terr != nil {
		return nil, "", terr
	}
	return run, tok, nil
}

func writeTokenPiece(h interface{ Write([]byte) (int, error) }, s segment, m *manifest, objs []Object, withoutStale bool) {
	fmt.Fprintf(h, "seg %q\n", s.dir)
	if m == nil {
		fmt.Fprintf(h, "none\n")
	} else {
		byName := make(map[string]Object, len(objs))
		for _, o := range objs {
			byName[o.Name] = o
		}
		for _, f := range m.Files {
			o, ok := byName[f.Name]
			if !ok {
				fmt.Fprintf(h, "file %q %s missing\n", f.Name, f.SHA256)
				continue
			}
			fmt.Fprintf(h, "file %q %s %d %s\n", f.Name, f.SHA256, o.Size, o.ETag)
		}
	}
	if withoutStale {
		return
	}
	// A clean folder adds nothing here, so tokens recorded before
	// leftovers were counted still match a clean folder.
	for _, name := range staleFiles(m, objs) {
		fmt.Fprintf(h, "stale %q\n", name)
	}
}

// staleFiles are the folder's data and temporary files that its manifest
// (nil: the folder was never committed) does not list, sorted by name.
func staleFiles(m *manifest, objs []Object) []string {
	listed := map[string]bool{}
	if m != nil {
		for _, f := range m.Files {
			listed[f.Name] = true
		}
	}
	var out []string
	for _, o := range objs {
		if !listed[o.Name] && (strings.HasPrefix(o.Name, dataPrefix) || strings.HasPrefix(o.Name, tmpPrefix)) {
			out = append(out, o.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Ledger: one small object per run under <table>/_idem_runs/<partition>/,
// named by finish time and run id so that a listing orders them. A
// committed load also embeds its run in the manifest it wrote, which covers
// a crash between the manifest and the ledger object.

func runLabelDir(label string) string {
	if label == "" {
		return wholeTable + "/"
	}
	return esc(label) + "/"
}

func runObjectName(r *idem.Run) string {
	ts, err := time.Parse(time.RFC3339Nano, r.FinishedAt)
	if err != nil {
		ts = time.Time{}
	}
	return ts.UTC().Format("20060102T150405.000000Z") + "_" + esc(r.RunID) + ".json"
}

func (t *Target) putRun(ctx context.Context, r *idem.Run) error {
	b, err := json.Marshal(&runRecord{Run: *r, StateToken: r.StateToken})
	if err != nil {
		return err
	}
	_, err = t.st.Put(ctx, tableDir(r.Table)+runsDir+runLabelDir(r.Partition)+runObjectName(r), b)
	return err
}

func (t *Target) RecordSkip(ctx context.Context, r *idem.Run) error { return t.putRun(ctx, r) }

type runRef struct {
	key, name string
	inline    *idem.Run
}

// LastRun reads only the ledger folder (two requests): it serves the rerun
// fast path, which needs the newest run's input digest and state token. A
// run whose ledger object a crash prevented is left out here; its state
// token would be unknown anyway, so the fast path is only missed once.
func (t *Target) LastRun(ctx context.Context, table, partition string) (*idem.Run, error) {
	dir := tableDir(table) + runsDir + runLabelDir(partition)
	objs, _, err := t.st.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	newest := ""
	for _, o := range objs {
		if strings.HasSuffix(o.Name, ".json") && !strings.HasPrefix(o.Name, tmpPrefix) && o.Name > newest {
			newest = o.Name
		}
	}
	if newest == "" {
		return nil, nil
	}
	b, err := t.st.Get(ctx, dir+newest)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec runRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %s: corrupt ledger entry: %w", t.st, dir+newest, err)
	}
	r := rec.run()
	return &r, nil
}

func (t *Target) Runs(ctx context.Context, f idem.RunFilter) ([]idem.Run, error) {
	var tables []string
	if f.Table != "" {
		tables = []string{f.Table}
	} else {
		_, dirs, err := t.st.List(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, d := range dirs {
			if name, err := unesc(strings.TrimSuffix(d, "/")); err == nil {
				tables = append(tables, name)
			}
		}
	}
	var refs []runRef
	for _, table := range tables {
		base := tableDir(table) + runsDir
		var labels []string
		if f.Partition != "" || f.ExactPartition {
			labels = []string{runLabelDir(f.Partition)}
		} else {
			_, dirs, err := t.st.List(ctx, base)
			if err != nil {
				return nil, err
			}
			labels = dirs
		}
		seen := map[string]bool{}
		for _, l := range labels {
			objs, _, err := t.st.List(ctx, base+l)
			if err != nil {
				return nil, err
			}
			for _, o := range objs {
				if strings.HasSuffix(o.Name, ".json") && !strings.HasPrefix(o.Name, tmpPrefix) {
					refs = append(refs, runRef{key: base + l + o.Name, name: o.Name})
					seen[o.Name] = true
				}
			}
		}
		// Runs whose ledger object a crash prevented: they live in the
		// manifest they committed.
		lay, err := t.readLayout(ctx, table)
		if err != nil {
			return nil, err
		}
		segs := lay.all()
		if f.Partition != "" || f.ExactPartition {
			if p, err := idem.ParsePartition(f.Partition); err == nil && f.Partition != "" {
				segs, _ = lay.scope(p)
			} else if f.Partition == "" && len(lay.parts) > 0 {
				segs = nil // whole-table runs of a partitioned table are all in the ledger folder
			}
		}
		for _, s := range segs {
			m, _, err := t.readManifest(ctx, table, s)
			if err != nil {
				return nil, err
			}
			if m == nil || m.Run == nil {
				continue
			}
			r := m.Run.run()
			if (f.Partition != "" || f.ExactPartition) && r.Partition != f.Partition {
				continue
			}
			if name := runObjectName(&r); !seen[name] {
				seen[name] = true
				refs = append(refs, runRef{name: name, inline: &r})
			}
		}
	}
	// Names start with the finish time at fixed width: newest first, then
	// by run id, as the SQL ledger orders.
	sort.Slice(refs, func(i, j int) bool { return refs[i].name > refs[j].name })
	if f.Limit > 0 && len(refs) > f.Limit {
		refs = refs[:f.Limit]
	}
	out := make([]idem.Run, 0, len(refs))
	for _, ref := range refs {
		if ref.inline != nil {
			out = append(out, *ref.inline)
			continue
		}
		b, err := t.st.Get(ctx, ref.key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var rec runRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("%s: %s: corrupt ledger entry: %w", t.st, ref.key, err)
		}
		out = append(out, rec.run())
	}
	return out, nil
}
