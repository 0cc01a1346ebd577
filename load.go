package idem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Strategy is an idempotent write strategy (SPEC.md § idem load).
type Strategy string

const (
	Upsert           Strategy = "upsert"
	InsertMissing    Strategy = "insert-missing"
	ReplacePartition Strategy = "replace-partition"
	Replace          Strategy = "replace"
	Merge            Strategy = "merge"
)

// Strategies lists every strategy in the order the docs present them.
var Strategies = []Strategy{Upsert, InsertMissing, ReplacePartition, Replace, Merge}

// Dedupe says what to do with several input rows for one key.
type Dedupe string

const (
	DedupeError Dedupe = "error"
	DedupeFirst Dedupe = "first"
	DedupeLast  Dedupe = "last"
)

// Partition is one value of one column: the slice of a table a load owns.
type Partition struct {
	Column string
	Value  string // canonical once the load is planned
}

// String is the ledger's label, "col=value".
func (p *Partition) String() string {
	if p == nil {
		return ""
	}
	return p.Column + "=" + p.Value
}

// ParsePartition reads "COL=VALUE".
func ParsePartition(s string) (*Partition, error) {
	col, val, ok := strings.Cut(s, "=")
	if !ok || col == "" {
		return nil, BadInput("--partition %q: want COL=VALUE", s)
	}
	return &Partition{Column: col, Value: val}, nil
}

// Stamp is a constant column added to every row (--stamp COL=TEMPLATE, after
// rendering).
type Stamp struct {
	Column string
	Value  string
}

// LoadSpec is everything the user asked of one load.
type LoadSpec struct {
	Table      string
	Strategy   Strategy
	Key        []string
	Partition  *Partition
	Dedupe     Dedupe
	Stamps     []Stamp
	Create     bool
	Evolve     bool
	AllowEmpty bool
	DryRun     bool
	Force      bool
	// NoDigest turns comparing rows in the client off: keyed loads neither
	// use nor keep a row digest, every comparison runs in the database, and
	// keyless swaps delete and rewrite their whole scope.
	NoDigest bool
	// DiffBuffer bounds, in bytes, the changed rows a keyless swap that
	// compares rows in the client holds in memory before it stages them
	// instead (0: 16 MB). Tests make it small to take the staging path.
	DiffBuffer int
	// DiffMaxRows bounds the scope a keyless swap compares in the client
	// (0: 1M rows, about 37 MB); a bigger one is swapped whole.
	DiffMaxRows   int64
	LockTimeout   time.Duration
	Pipeline      string
	ExecutionDate string
	// InputDigest identifies the raw input and the spec, computed before
	// parsing; empty when the input cannot be digested up front (a query),
	// which turns the rerun fast path off.
	InputDigest string
	RunID       string
	// Now is the wall clock for the ledger's started/finished times only:
	// no data value ever depends on it.
	Now func() time.Time
}

// Validate checks the combination of options (SPEC.md: strategy needs).
func (s *LoadSpec) Validate() error {
	if s.Table == "" {
		return BadInput("--table is required")
	}
	if s.Strategy == "" {
		switch {
		case len(s.Key) > 0:
			s.Strategy = Upsert
		case s.Partition != nil:
			s.Strategy = ReplacePartition
		default:
			return BadInput("give --key (upsert) or --partition (replace-partition), or name a --strategy")
		}
	}
	known := false
	for _, st := range Strategies {
		known = known || st == s.Strategy
	}
	if !known {
		return BadInput("unknown strategy %q (want upsert, insert-missing, replace-partition, replace or merge)", s.Strategy)
	}
	switch s.Strategy {
	case Upsert, InsertMissing, Merge:
		if len(s.Key) == 0 {
			return BadInput("--strategy %s needs --key", s.Strategy)
		}
	case ReplacePartition:
		if s.Partition == nil {
			return BadInput("--strategy replace-partition needs --partition COL=VALUE")
		}
	case Replace:
		if s.Partition != nil {
			return BadInput("--strategy replace replaces the whole table; use replace-partition with --partition")
		}
	}
	switch s.Dedupe {
	case "":
		s.Dedupe = DedupeError
	case DedupeError, DedupeFirst, DedupeLast:
	default:
		return BadInput("--dedupe %q: want error, first or last", s.Dedupe)
	}
	seen := map[string]bool{}
	for _, k := range s.Key {
		if k == "" || seen[k] {
			return BadInput("--key %q: empty or repeated column", strings.Join(s.Key, ","))
		}
		seen[k] = true
	}
	if s.LockTimeout <= 0 {
		s.LockTimeout = 10 * time.Minute
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	return nil
}

// Result is the outcome of one load (SPEC.md result fields).
type Result struct {
	Table             string `json:"table"`
	Partition         string `json:"partition"`
	Strategy          string `json:"strategy"`
	RowsIn            int64  `json:"rows_in"`
	Inserted          int64  `json:"inserted"`
	Updated           int64  `json:"updated"`
	Deleted           int64  `json:"deleted"`
	Unchanged         int64  `json:"unchanged"`
	Skipped           int64  `json:"skipped"`
	InputFingerprint  string `json:"input_fingerprint"`
	OutputFingerprint string `json:"output_fingerprint"`
	DurationMS        int64  `json:"duration_ms"`
	RunID             string `json:"run_id"`
	// Fast is true when the rerun fast path proved the target already held
	// this input and nothing was written.
	Fast   bool `json:"fast_path"`
	DryRun bool `json:"dry_run,omitempty"`
}

// Line is the one-line human form of SPEC.md.
func (r *Result) Line() string {
	var b strings.Builder
	b.WriteString(r.Table)
	if r.Partition != "" {
		fmt.Fprintf(&b, " [%s]", r.Partition)
	}
	fmt.Fprintf(&b, " %s: %d in · %d inserted · %d updated · %d deleted · %d unchanged", r.Strategy, r.RowsIn, r.Inserted, r.Updated, r.Deleted, r.Unchanged)
	if r.Skipped > 0 {
		fmt.Fprintf(&b, " · %d skipped", r.Skipped)
	}
	fmt.Fprintf(&b, " · %.2fs", float64(r.DurationMS)/1000)
	if r.DryRun {
		b.WriteString(" (dry run, nothing committed)")
	}
	return b.String()
}

// Run is one ledger entry.
type Run struct {
	RunID             string `json:"run_id"`
	Pipeline          string `json:"pipeline"`
	Table             string `json:"table"`
	Partition         string `json:"partition"`
	ExecutionDate     string `json:"execution_date"`
	Strategy          string `json:"strategy"`
	InputDigest       string `json:"input_digest"`
	InputFingerprint  string `json:"input_fingerprint"`
	OutputFingerprint string `json:"output_fingerprint"`
	OutputRows        int64  `json:"output_rows"`
	StateToken        string `json:"-"`
	RowsIn            int64  `json:"rows_in"`
	Inserted          int64  `json:"inserted"`
	Updated           int64  `json:"updated"`
	Deleted           int64  `json:"deleted"`
	Unchanged         int64  `json:"unchanged"`
	Skipped           int64  `json:"skipped"`
	Status            string `json:"status"` // "ok" or "skipped" (fast path)
	StartedAt         string `json:"started_at"`
	FinishedAt        string `json:"finished_at"`
}

// RunFilter selects ledger rows.
type RunFilter struct {
	Table     string
	Partition string
	// ExactPartition matches Partition even when it is "" (whole-table
	// loads) instead of treating "" as "any".
	ExactPartition bool
	Limit          int
}

// ErrNoTable is returned by Describe for a missing table.
var ErrNoTable = errors.New("table does not exist")

// Target is a place idem loads into. Each backend package implements it;
// the conformance package holds the tests every implementation must pass.
type Target interface {
	// Describe returns the table's columns, or ErrNoTable.
	Describe(ctx context.Context, table string) (Schema, error)
	// Apply runs one planned load in a single transaction: lock, create
	// or evolve the table, stream the input, write what differs, append
	// the ledger row, commit (or roll back for a dry run). Nothing of a
	// failed Apply is visible.
	Apply(ctx context.Context, p *Plan, in *Input) (*Result, error)
	// LastRun returns the newest ledger entry for table and partition
	// label, or nil.
	LastRun(ctx context.Context, table, partition string) (*Run, error)
	// StateToken is a cheap summary of the current content of the table
	// or partition, computed in the backend; equal tokens mean unchanged
	// content. Its form is the backend's own.
	StateToken(ctx context.Context, table string, part *Partition) (string, error)
	// RecordSkip appends a ledger row for a fast-path rerun.
	RecordSkip(ctx context.Context, run *Run) error
	// Scan streams the rows of a table (or partition) in canonical form.
	Scan(ctx context.Context, table string, part *Partition, fn func(Schema, Row) error) error
	// Runs lists ledger rows newest first.
	Runs(ctx context.Context, f RunFilter) ([]Run, error)
	Close() error
}

// RunTokenReader is an optional Target method for backends where the last
// run and the state token are separate round trips to a remote store
// (object stores): fetching both at once halves the rerun fast path's
// waiting. tok is "" when the table does not exist; run is nil when no run
// was recorded.
type RunTokenReader interface {
	LastRunAndToken(ctx context.Context, table string, part *Partition) (run *Run, tok string, err error)
}

// Plan is a LoadSpec resolved against the target: the final type of every
// column written. What to create or add to the table is decided again
// under the load's lock, since a concurrent load may have done it.
type Plan struct {
	LoadSpec
	// Columns being written, in input order; Key and Partition columns
	// are among them.
	Columns Schema
	Exists  bool  // the table existed when the load was planned
	KeyIdx  []int // positions of the key columns in Columns
	started time.Time
}

// Load plans and applies one load: the fast path for an identical rerun,
// type inference, validation, then the target's transaction.
func Load(ctx context.Context, t Target, rr RecordReader, spec LoadSpec) (*Result, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	started := spec.Now()
	if r, err := fastPath(ctx, t, &spec, started); r != nil || err != nil {
		return r, err
	}
	plan, in, err := prepare(ctx, t, rr, spec)
	if err != nil {
		return nil, err
	}
	plan.started = started
	defer in.Close()
	res, err := t.Apply(ctx, plan, in)
	if err != nil {
		return nil, err
	}
	res.DurationMS = time.Since(started).Milliseconds()
	return res, nil
}

// Started is when the load began (for the ledger).
func (p *Plan) Started() time.Time { return p.started }

// fastPath returns a result without writing when the last committed run of
// this table and partition had the same input digest and the target still
// holds exactly what that run left.
func fastPath(ctx context.Context, t Target, spec *LoadSpec, started time.Time) (*Result, error) {
	if spec.Force || spec.InputDigest == "" {
		return nil, nil
	}
	part := spec.Partition.String()
	var last *Run
	var tok string
	var err error
	// The partition value is still as the user wrote it; a non-canonical
	// spelling (say 2024-1-5) finds no ledger row and so only misses the
	// fast path.
	if rt, ok := t.(RunTokenReader); ok {
		last, tok, err = rt.LastRunAndToken(ctx, spec.Table, spec.Partition)
		if err != nil || last == nil || last.InputDigest != spec.InputDigest || last.StateToken == "" {
			return nil, err
		}
	} else {
		last, err = t.LastRun(ctx, spec.Table, part)
		if err != nil || last == nil || last.InputDigest != spec.InputDigest || last.StateToken == "" {
			return nil, err
		}
		tok, err = t.StateToken(ctx, spec.Table, spec.Partition)
		if errors.Is(err, ErrNoTable) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
	if tok == "" || tok != last.StateToken {
		return nil, nil
	}
	res := &Result{
		Table: spec.Table, Partition: part, Strategy: string(spec.Strategy),
		RowsIn: last.RowsIn, Unchanged: last.RowsIn - last.Skipped, Skipped: last.Skipped,
		InputFingerprint: last.InputFingerprint, OutputFingerprint: last.OutputFingerprint,
		RunID: spec.RunID, Fast: true, DryRun: spec.DryRun,
	}
	if !spec.DryRun {
		run := &Run{
			RunID: spec.RunID, Pipeline: spec.Pipeline, Table: spec.Table, Partition: part,
			ExecutionDate: spec.ExecutionDate, Strategy: string(spec.Strategy),
			InputDigest: spec.InputDigest, InputFingerprint: last.InputFingerprint,
			OutputFingerprint: last.OutputFingerprint, OutputRows: last.OutputRows, StateToken: tok,
			RowsIn: last.RowsIn, Unchanged: res.Unchanged, Skipped: last.Skipped, Status: "skipped",
			StartedAt: FormatTimestamp(started), FinishedAt: FormatTimestamp(spec.Now()),
		}
		if err := t.RecordSkip(ctx, run); err != nil {
			return nil, err
		}
	}
	res.DurationMS = time.Since(started).Milliseconds()
	return res, nil
}

// inferSample is how many records type inference looks at before the table
// is created. Later values that do not fit are reported as bad input with
// their line, never silently coerced.
const inferSample = 10000

func prepare(ctx context.Context, t Target, rr RecordReader, spec LoadSpec) (*Plan, *Input, error) {
	inCols := rr.Columns()
	seen := map[string]bool{}
	for _, c := range inCols {
		if seen[c] {
			return nil, nil, BadInput("input has column %q twice", c)
		}
		seen[c] = true
	}
	// Extra constant columns: stamps, and the partition column when the
	// input does not carry it.
	var extra []Stamp
	for _, s := range spec.Stamps {
		if seen[s.Column] {
			return nil, nil, BadInput("--stamp %s: the input already has that column", s.Column)
		}
		seen[s.Column] = true
		extra = append(extra, s)
	}
	partFromInput := true
	if p := spec.Partition; p != nil && !seen[p.Column] {
		partFromInput = false
		extra = append(extra, Stamp{Column: p.Column, Value: p.Value})
		seen[p.Column] = true
	}
	for _, k := range spec.Key {
		if !seen[k] {
			return nil, nil, BadInput("--key column %q is not in the input (columns: %s)", k, strings.Join(inCols, ", "))
		}
	}
	names := append(append([]string{}, inCols...), stampNames(extra)...)

	existing, err := t.Describe(ctx, spec.Table)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNoTable) {
		return nil, nil, err
	}
	if !exists && !spec.Create {
		return nil, nil, BadInput("table %q does not exist (and --no-create was given)", spec.Table)
	}

	// Sample records for inference when a type must be guessed.
	var missing []int
	for i, n := range names {
		if !exists || existing.Index(n) < 0 {
			missing = append(missing, i)
		}
	}
	if exists && len(missing) > 0 && !spec.Evolve {
		return nil, nil, BadInput("table %q has no column %q (add --evolve to add it)", spec.Table, names[missing[0]])
	}
	var sample [][]Value
	var samplePos []Pos
	var readErr error
	if len(missing) > 0 {
		inf := NewInferrer(len(names))
		for len(sample) < inferSample {
			rec, pos, err := rr.Read()
			if err != nil {
				if err != io.EOF {
					readErr = err
				}
				break
			}
			full := make([]Value, 0, len(names))
			full = append(full, rec...)
			for _, s := range extra {
				full = append(full, V(s.Value))
			}
			inf.Observe(full)
			sample = append(sample, full)
			samplePos = append(samplePos, pos)
		}
		if readErr != nil {
			return nil, nil, readErr
		}
		types := inf.Types()
		plan := &Plan{LoadSpec: spec, Exists: exists}
		for i, n := range names {
			typ := types[i]
			if j := existing.Index(n); j >= 0 {
				typ = existing[j].Type
			}
			plan.Columns = append(plan.Columns, Column{n, typ})
		}
		return finishPlan(plan, rr, sample, samplePos, extra, partFromInput)
	}
	plan := &Plan{LoadSpec: spec, Exists: true}
	for _, n := range names {
		plan.Columns = append(plan.Columns, existing[existing.Index(n)])
	}
	return finishPlan(plan, rr, nil, nil, extra, partFromInput)
}

func stampNames(s []Stamp) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.Column
	}
	return out
}

func finishPlan(plan *Plan, rr RecordReader, sample [][]Value, samplePos []Pos, extra []Stamp, partFromInput bool) (*Plan, *Input, error) {
	for _, k := range plan.Key {
		plan.KeyIdx = append(plan.KeyIdx, plan.Columns.Index(k))
	}
	// Canonicalise constant values against the final types.
	for i := range extra {
		c := plan.Columns[plan.Columns.Index(extra[i].Column)]
		v, err := Canon(c.Type, extra[i].Value)
		if err != nil {
			return nil, nil, BadInput("column %q (%s): value %q %v", c.Name, c.Type, extra[i].Value, err)
		}
		extra[i].Value = v
	}
	if p := plan.Partition; p != nil {
		c := plan.Columns[plan.Columns.Index(p.Column)]
		v, err := Canon(c.Type, p.Value)
		if err != nil {
			return nil, nil, BadInput("--partition %s: value %q %v (column is %s)", p.Column, p.Value, err, c.Type)
		}
		plan.Partition = &Partition{Column: p.Column, Value: v}
	}
	in := &Input{
		rr: rr, plan: plan, sample: sample, samplePos: samplePos,
		nIn: len(rr.Columns()), hasher: NewRowHasher(plan.Columns),
	}
	if p := plan.Partition; p != nil && partFromInput {
		in.partIdx = plan.Columns.Index(p.Column)
	} else {
		in.partIdx = -1
	}
	for _, s := range extra {
		in.consts = append(in.consts, V(s.Value))
	}
	return plan, in, nil
}

// Input is the validated row stream a target consumes: each record of the
// reader typed and canonicalised against the plan's columns, keys checked
// for NULL, rows checked against the partition, and the input fingerprint
// accumulated on the way. A target reads it once.
//
// After the inference sample, records are read, converted and hashed ahead
// of the consumer by two goroutines (parse, then canonicalise and hash), in
// batches: on a rerun whose target work is small, parsing and hashing are
// the whole cost, and they split over two cores. Rows and errors still come
// out in input order, exactly as a sequential reader would give them.
type Input struct {
	rr        RecordReader
	plan      *Plan
	sample    [][]Value
	samplePos []Pos
	consts    []Value
	nIn       int
	partIdx   int
	hasher    *RowHasher
	fp        Fingerprint
	last      RowHash
	pos       Pos
	done      bool

	pipe *inputPipe
	cur  *rowBatch
	i    int
}

// LastHash is the row hash of the row last returned by Next (the hash the
// fingerprint added).
func (in *Input) LastHash() RowHash { return in.last }

// Columns is the schema of the rows Next returns.
func (in *Input) Columns() Schema { return in.plan.Columns }

// Pos is where the row last returned by Next came from.
func (in *Input) Pos() Pos { return in.pos }

// Fingerprint of every row returned so far (the whole input once Next has
// returned io.EOF).
func (in *Input) Fingerprint() Fingerprint { return in.fp }

// Next returns the next valid row, io.EOF at the end, or the first error.
func (in *Input) Next() (Row, error) {
	if len(in.sample) > 0 {
		rec, pos := in.sample[0], in.samplePos[0]
		in.sample, in.samplePos = in.sample[1:], in.samplePos[1:]
		in.pos = pos
		row, h, err := in.convert(in.hasher, make(Row, len(in.plan.Columns)), rec[:in.nIn], pos)
		if err != nil {
			return nil, err
		}
		in.last = h
		in.fp.Add(h)
		return row, nil
	}
	if in.done {
		return nil, io.EOF
	}
	for in.cur == nil || in.i >= len(in.cur.rows) {
		if in.cur != nil && in.cur.err != nil {
			in.pos = in.cur.errPos
			if in.cur.err == io.EOF {
				in.done = true
			}
			return nil, in.cur.err
		}
		if in.pipe == nil {
			in.pipe = startPipe(in)
		}
		in.cur, in.i = <-in.pipe.rows, 0
	}
	b := in.cur
	row, h := b.rows[in.i], b.hash[in.i]
	in.pos = b.pos[in.i]
	in.i++
	in.last = h
	in.fp.Add(h)
	return row, nil
}

// Close stops the read-ahead and waits for it, so the reader is no longer
// used once Close returns. Load calls it; a target need not.
func (in *Input) Close() {
	if in.pipe != nil {
		in.pipe.stop()
	}
}

// convert types, canonicalises, checks and hashes one record into row
// (len(plan.Columns) values).
func (in *Input) convert(hasher *RowHasher, row Row, rec []Value, pos Pos) (Row, RowHash, error) {
	cols := in.plan.Columns
	for i, v := range rec {
		if !v.Null {
			s, err := Canon(cols[i].Type, v.S)
			if err != nil {
				return nil, RowHash{}, &InputError{File: pos.File, Line: pos.Line, Col: pos.Field(i), Column: cols[i].Name,
					Msg: fmt.Sprintf("%s %v (column is %s)", quoteShort(v.S), err, cols[i].Type)}
			}
			v.S = s
		}
		row[i] = v
	}
	copy(row[in.nIn:], in.consts)
	for j, k := range in.plan.KeyIdx {
		if row[k].Null || (row[k].S == "" && cols[k].Type == TypeText) {
			what := "NULL"
			if !row[k].Null {
				what = "empty"
			}
			col := 0
			if k < in.nIn {
				col = pos.Field(k)
			}
			return nil, RowHash{}, &InputError{File: pos.File, Line: pos.Line, Col: col, Column: in.plan.Key[j], Msg: "key value is " + what}
		}
	}
	if in.partIdx >= 0 {
		v := row[in.partIdx]
		if v.Null || v.S != in.plan.Partition.Value {
			got := "NULL"
			if !v.Null {
				got = quoteShort(v.S)
			}
			return nil, RowHash{}, &InputError{File: pos.File, Line: pos.Line, Col: pos.Field(in.partIdx), Column: in.plan.Partition.Column,
				Msg: fmt.Sprintf("row is outside the partition: %s, want %q", got, in.plan.Partition.Value)}
		}
	}
	return row, hasher.Hash(row), nil
}

// pipeBatch is how many records travel together between the stages:
// enough to make channel hand-offs negligible, small enough that the
// read-ahead holds a few hundred KB.
const pipeBatch = 256

// recBatch is raw records back to back (nIn values each), then err (io.EOF
// at the end) at errPos.
type recBatch struct {
	vals   []Value
	pos    []Pos
	err    error
	errPos Pos
}

type rowBatch struct {
	rows   []Row
	hash   []RowHash
	pos    []Pos
	err    error
	errPos Pos
}

type inputPipe struct {
	rows    chan *rowBatch
	quit    chan struct{}
	parsing chan struct{} // closed when the parser has returned
	conv    sync.WaitGroup
	once    sync.Once
}

// parserGrace bounds how long stop waits for a parser blocked in Read: a
// file answers at once, but a stalled pipe on stdin may never answer, and a
// failed load must still return.
const parserGrace = time.Second

// converters is how many goroutines canonicalise and hash: converting
// costs about twice what parsing does, so two keep up with one parser.
const converters = 2

func (p *inputPipe) stop() {
	p.once.Do(func() { close(p.quit) })
	p.conv.Wait()
	select {
	case <-p.parsing:
	case <-time.After(parserGrace):
	}
}

// job is one batch on its way through a converter; done is closed when out
// is ready. The orderer hands jobs to the consumer in the order the parser
// made them, whichever converter finishes first.
type job struct {
	in   *recBatch
	out  *rowBatch
	done chan struct{}
}

func startPipe(in *Input) *inputPipe {
	p := &inputPipe{rows: make(chan *rowBatch, 4), quit: make(chan struct{}), parsing: make(chan struct{})}
	work := make(chan *job, 2*converters)
	order := make(chan *job, 2*converters)
	quitting := func() bool {
		select {
		case <-p.quit:
			return true
		default:
			return false
		}
	}
	send := func(c chan *job, j *job) bool {
		select {
		case c <- j:
			return true
		case <-p.quit:
			return false
		}
	}
	go func() { // parse
		defer close(p.parsing)
		defer close(order)
		defer close(work)
		for {
			b := &recBatch{vals: make([]Value, 0, pipeBatch*in.nIn), pos: make([]Pos, 0, pipeBatch)}
			for len(b.pos) < pipeBatch {
				rec, pos, err := in.rr.Read()
				if quitting() {
					return
				}
				if err != nil {
					b.err, b.errPos = err, pos
					break
				}
				b.vals = append(b.vals, rec...)
				b.pos = append(b.pos, pos)
			}
			j := &job{in: b, done: make(chan struct{})}
			if !send(order, j) || !send(work, j) || b.err != nil {
				return
			}
		}
	}()
	p.conv.Add(converters + 1)
	for range converters {
		go func() { // canonicalise and hash
			defer p.conv.Done()
			hasher := NewRowHasher(in.plan.Columns)
			for {
				var j *job
				select {
				case r, ok := <-work:
					if !ok {
						return
					}
					j = r
				case <-p.quit:
					return
				}
				rb := j.in
				n, nc := len(rb.pos), len(in.plan.Columns)
				b := &rowBatch{rows: make([]Row, 0, n), hash: make([]RowHash, 0, n), pos: rb.pos, err: rb.err, errPos: rb.errPos}
				// One allocation for the batch's rows; a row may outlive
				// the batch (a target that merges in memory keeps it).
				flat := make([]Value, n*nc)
				for k := 0; k < n; k++ {
					row, h, err := in.convert(hasher, flat[k*nc:(k+1)*nc:(k+1)*nc], rb.vals[k*in.nIn:(k+1)*in.nIn], rb.pos[k])
					if err != nil {
						b.pos, b.err, b.errPos = rb.pos[:k], err, rb.pos[k]
						break
					}
					b.rows = append(b.rows, row)
					b.hash = append(b.hash, h)
				}
				j.out = b
				close(j.done)
			}
		}()
	}
	go func() { // hand batches on in input order
		defer p.conv.Done()
		for {
			var j *job
			select {
			case r, ok := <-order:
				if !ok {
					return
				}
				j = r
			case <-p.quit:
				return
			}
			select {
			case <-j.done:
			case <-p.quit:
				return
			}
			select {
			case p.rows <- j.out:
			case <-p.quit:
				return
			}
			if j.out.err != nil {
				// Nothing after the first error is read.
				p.once.Do(func() { close(p.quit) })
				return
			}
		}
	}()
	return p
}

func quoteShort(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%q", s)
}
