package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/idemhq/idem"
)

// Object names. A table is a folder; an unpartitioned table keeps its files
// at the folder's root, a partitioned one in Hive-style sub-folders
// col=value/. Every folder holding data has a manifest listing exactly the
// files that make up its current content. Names starting with "_" or "."
// are skipped by Hive-style readers (Spark, DuckDB, Trino).
const (
	manifestName = "_idem_manifest.json"
	runsDir      = "_idem_runs/"
	lockName     = "_idem.lock"
	dataPrefix   = "part-"
	// hiveNull is the folder value Hive, Spark and DuckDB use for NULL.
	hiveNull = "__HIVE_DEFAULT_PARTITION__"
	// wholeTable is the ledger folder of loads without --partition; "@" is
	// always escaped in labels, so no partition's folder can be named so.
	wholeTable = "@table"
)

// esc makes s one safe path segment: bytes other than ASCII letters,
// digits, "_", "-" and a non-leading "." are percent-encoded, so no value
// can add a "/", form "." or "..", hold NUL, or start a hidden name.
func esc(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func unesc(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		var c byte
		if _, err := fmt.Sscanf(s[i+1:i+3], "%02X", &c); err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.WriteByte(c)
		i += 2
	}
	return b.String(), nil
}

func escValue(v idem.Value) string {
	if v.Null {
		return hiveNull
	}
	e := esc(v.S)
	if e == hiveNull {
		return "%5F" + e[1:]
	}
	return e
}

func tableDir(table string) string { return esc(table) + "/" }

// segDir is a partition's folder inside the table folder ("" for the root
// of an unpartitioned table).
func segDir(col string, v idem.Value) string { return esc(col) + "=" + escValue(v) + "/" }

// checkPartitionValue refuses --partition values that would name another
// folder if used as a path. Escaping already makes them harmless; refusing
// them says so plainly instead of writing a surprising folder name.
func checkPartitionValue(p *idem.Partition) error {
	if p == nil {
		return nil
	}
	v := p.Value
	switch {
	case strings.ContainsAny(v, "/\\\x00"), v == ".", v == "..", strings.HasPrefix(v, "../"):
		return idem.BadInput("--partition %s=%q: a partition value must not contain '/', '\\' or NUL, nor be '.' or '..' (it names a folder under the table)", p.Column, v)
	case strings.ContainsAny(p.Column, "/\\\x00"):
		return idem.BadInput("--partition column %q must not contain '/', '\\' or NUL", p.Column)
	}
	return nil
}

// segment is one folder of data with its manifest.
type segment struct {
	dir   string     // relative to the table folder; "" is the root
	value idem.Value // partition value; unused for the root
}

// layout is how a table is stored: files at the root, or partitions by one
// column.
type layout struct {
	table   string
	root    bool   // the root has a manifest
	partCol string // the partition column, when there are partition folders
	parts   []segment
}

func (t *Target) readLayout(ctx context.Context, table string) (*layout, error) {
	objs, dirs, err := t.st.List(ctx, tableDir(table))
	if err != nil {
		return nil, err
	}
	l := &layout{table: table}
	for _, o := range objs {
		if o.Name == manifestName {
			l.root = true
		}
	}
	for _, d := range dirs {
		name := strings.TrimSuffix(d, "/")
		ec, ev, ok := strings.Cut(name, "=")
		// A leading "_" is not skipped: it is how a partition column such
		// as "_dt" starts, and idem's own folders hold no "=".
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		col, err := unesc(ec)
		if err != nil {
			continue
		}
		v := idem.Null
		if ev != hiveNull {
			s, err := unesc(ev)
			if err != nil {
				continue
			}
			v = idem.V(s)
		}
		if l.partCol != "" && l.partCol != col {
			return nil, fmt.Errorf("%s: table %q has partition folders for two columns (%q and %q); idem keeps one partition column per table", t.st, table, l.partCol, col)
		}
		l.partCol = col
		l.parts = append(l.parts, segment{dir: d, value: v})
	}
	sort.Slice(l.parts, func(i, j int) bool { return l.parts[i].dir < l.parts[j].dir })
	return l, nil
}

// single reports whether a load or scan of part touches exactly one
// partition folder (the table is, or will be, partitioned by its column).
func (l *layout) single(part *idem.Partition) bool {
	return part != nil && !l.root && (l.partCol == "" || l.partCol == part.Column)
}

// all is every folder that may hold data.
func (l *layout) all() []segment {
	var out []segment
	if l.root {
		out = append(out, segment{})
	}
	return append(out, l.parts...)
}

// scope is the folders a load or scan of part reads, and whether rows must
// still be filtered by the partition value.
func (l *layout) scope(part *idem.Partition) ([]segment, bool) {
	if part == nil {
		return l.all(), false
	}
	if l.single(part) {
		return []segment{{dir: segDir(part.Column, idem.V(part.Value)), value: idem.V(part.Value)}}, false
	}
	return l.all(), true
}

// manifest is a folder's commit record: written last, after every file it
// lists, it decides what the folder holds.
type manifest struct {
	Version     int          `json:"idem_manifest"`
	Table       string       `json:"table"`
	Partition   *partJSON    `json:"partition,omitempty"`
	Columns     []columnJSON `json:"columns"`
	Key         []string     `json:"key,omitempty"`
	Format      string       `json:"format"`
	Compression string       `json:"compression"`
	Rows        int64        `json:"rows"`
	Fingerprint string       `json:"fingerprint"`
	Files       []fileJSON   `json:"files"`
	Run         *runRecord   `json:"run,omitempty"`
}

type partJSON struct {
	Column string  `json:"column"`
	Value  *string `json:"value"` // nil is NULL
}

type columnJSON struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type fileJSON struct {
	Name        string `json:"name"`
	Rows        int64  `json:"rows"`
	Bytes       int64  `json:"bytes"`
	SHA256      string `json:"sha256"`
	Fingerprint string `json:"fingerprint"`
}

// runRecord is a ledger row as stored (idem.Run hides the state token from
// its own JSON form).
type runRecord struct {
	idem.Run
	StateToken string `json:"state_token,omitempty"`
}

func (r *runRecord) run() idem.Run {
	out := r.Run
	out.StateToken = r.StateToken
	return out
}

func (m *manifest) schema() (idem.Schema, error) {
	var s idem.Schema
	for _, c := range m.Columns {
		t, ok := typeByName[c.Type]
		if !ok {
			return nil, fmt.Errorf("manifest of %q: unknown column type %q", m.Table, c.Type)
		}
		s = append(s, idem.Column{Name: c.Name, Type: t})
	}
	return s, nil
}

var typeByName = func() map[string]idem.Type {
	m := map[string]idem.Type{}
	for t := idem.TypeText; t <= idem.TypeTimestamp; t++ {
		m[t.String()] = t
	}
	return m
}()

func (t *Target) manifestKey(table string, s segment) string {
	return tableDir(table) + s.dir + manifestName
}

// readManifest returns the folder's manifest and its raw bytes, or nil
// when the folder has none (never committed).
func (t *Target) readManifest(ctx context.Context, table string, s segment) (*manifest, []byte, error) {
	b, err := t.st.Get(ctx, t.manifestKey(table, s))
	if errors.Is(err, ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, fmt.Errorf("%s: %s: corrupt manifest: %w", t.st, t.manifestKey(table, s), err)
	}
	return &m, b, nil
}

// tableState is every folder's manifest and the table's columns (the union
// over the manifests, in first-seen order).
type tableState struct {
	lay    *layout
	mans   map[string]*manifest // by folder
	schema idem.Schema
}

func (t *Target) readState(ctx context.Context, table string) (*tableState, error) {
	lay, err := t.readLayout(ctx, table)
	if err != nil {
		return nil, err
	}
	ts := &tableState{lay: lay, mans: map[string]*manifest{}}
	segs := lay.all()
	// Fetched side by side: on S3 each is a round trip, and a table has
	// a folder per day.
	mans := make([]*manifest, len(segs))
	errs := make([]error, len(segs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, s := range segs {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, s segment) {
			defer func() { <-sem; wg.Done() }()
			mans[i], _, errs[i] = t.readManifest(ctx, table, s)
		}(i, s)
	}
	wg.Wait()
	for i, s := range segs {
		m, err := mans[i], errs[i]
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		ts.mans[s.dir] = m
		sch, err := m.schema()
		if err != nil {
			return nil, err
		}
		for _, c := range sch {
			j := ts.schema.Index(c.Name)
			if j < 0 {
				ts.schema = append(ts.schema, c)
			} else if ts.schema[j].Type != c.Type {
				return nil, fmt.Errorf("%s: table %q: column %q is %s in one partition and %s in another", t.st, table, c.Name, ts.schema[j].Type, c.Type)
			}
		}
	}
	return ts, nil
}

// errChanged is a listed file whose bytes are not the listed ones.
var errChanged = errors.New("file changed under its manifest")

// readRows decodes a folder's files (as listed by m) into rows laid out as
// schema, calling fn for each. Files are fetched before any row is
// returned, so a concurrent commit (which deletes replaced files) makes the
// read fail cleanly (ErrNotFound) instead of mixing versions.
func (t *Target) readRows(ctx context.Context, table string, s segment, m *manifest, schema idem.Schema, fn func(idem.Row) error) error {
	datas := make([][]byte, len(m.Files))
	for i, f := range m.Files {
		b, err := t.st.Get(ctx, tableDir(table)+s.dir+f.Name)
		if err != nil {
			return err
		}
		// The manifest names each file's content: a file that is not
		// that content is not this version (or was tampered with).
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f.SHA256 {
			return fmt.Errorf("%s%s%s: content differs from its manifest's sha256: %w", tableDir(table), s.dir, f.Name, errChanged)
		}
		datas[i] = b
	}
	partIdx := -1
	var partVal idem.Value
	if m.Partition != nil {
		partIdx = schema.Index(m.Partition.Column)
		partVal = idem.Null
		if m.Partition.Value != nil {
			partVal = idem.V(*m.Partition.Value)
		}
	}
	for i, f := range m.Files {
		name := strings.TrimSuffix(t.st.String(), "/") + "/" + tableDir(table) + s.dir + f.Name
		rr, err := decode(name, m.Format, datas[i])
		if err != nil {
			return fmt.Errorf("%s: stored file unreadable: %w", name, err)
		}
		cols := rr.Columns()
		idx := make([]int, len(cols))
		for j, c := range cols {
			idx[j] = schema.Index(c)
		}
		var n int64
		for {
			rec, _, err := rr.Read()
			if err != nil {
				rr.Close()
				if err == io.EOF {
					break
				}
				return fmt.Errorf("%s: stored file unreadable: %w", name, err)
			}
			row := make(idem.Row, len(schema))
			for j := range row {
				row[j] = idem.Null
			}
			for j, v := range rec {
				k := idx[j]
				if k < 0 || v.Null {
					continue
				}
				c, err := idem.Canon(schema[k].Type, v.S)
				if err != nil {
					rr.Close()
					return fmt.Errorf("%s: column %q: stored value %q %v", name, schema[k].Name, v.S, err)
				}
				row[k] = idem.V(c)
			}
			if partIdx >= 0 {
				row[partIdx] = partVal
			}
			n++
			if err := fn(row); err != nil {
				rr.Close()
				return err
			}
		}
		if n != f.Rows {
			return fmt.Errorf("%s: holds %d rows, its manifest says %d", name, n, f.Rows)
		}
	}
	return nil
}
