package sqlplan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"os"
	"strings"

	"github.com/idemhq/idem"
)

// The row digest makes a keyed load of a big, mostly unchanged scope cost
// what its changes cost on the server. After each keyed load that leaves a
// scope (table or partition) whose content it knows exactly, idem stores,
// next to the ledger, every row's canonical key and 128-bit row hash (the
// one the fingerprint adds up), together with the scope's state token. The
// next keyed load of that scope, if the token still matches (nothing wrote
// there since), compares the input with the digest in the client and
// stages only new and changed rows; rows gone from the input are deleted by
// key. Without a valid digest a load takes the full staging path, which is
// always correct, and writes a fresh digest for the next one.

// DigestTable holds the digests, in chunks of at most digestChunk bytes.
const DigestTable = "idem_digests"

const (
	digestChunk = 1 << 20
	// DigestMaxRows bounds the memory a digest takes (about 30 bytes a
	// row); bigger scopes go without one.
	DigestMaxRows = 2_000_000
	digestVersion = "d1"
)

// DigestDDL creates the digest table. create is "CREATE TABLE", or a
// variant such as PostgreSQL's "CREATE UNLOGGED TABLE": a digest is a cache
// whose loss only costs the next load the full path, so it need not pay for
// the write-ahead log.
func DigestDDL(d Dialect, create, textType, intType, blobType string) string {
	q := d.Quote
	return fmt.Sprintf(create+" IF NOT EXISTS %s (%s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, PRIMARY KEY (%s, %s, %s))",
		q(DigestTable), q("table_name"), textType, q("partition_label"), textType, q("chunk"), intType,
		q("state_token"), textType, q("schema_sig"), textType, q("data"), blobType,
		q("table_name"), q("partition_label"), q("chunk"))
}

// schemaSig names the columns and types a digest's row hashes cover, and
// the key its entries are indexed by.
func schemaSig(p *idem.Plan) string {
	var b strings.Builder
	b.WriteString(digestVersion)
	for _, c := range p.Columns {
		fmt.Fprintf(&b, "|%q:%s", c.Name, c.Type)
	}
	fmt.Fprintf(&b, "|key=%q", p.Key)
	return b.String()
}

// digestEntries is a parsed digest. Entries live in one byte slice (each
// uvarint(len(key)) key hi lo) and are found through a map from a seeded
// 64-bit hash of the key to the entry: a string-keyed map would cost an
// allocation and a header per row, and this one a third of the memory.
type digestEntries struct {
	data     []byte
	off      []uint32
	index    map[uint64]int32
	seed     maphash.Seed
	cursor   int
	collided bool
	// token is the scope's state token the digest was validated against.
	token string
	// Patches (patch.go): entries later patches removed, how many patches
	// were applied, and the sum of the live entries' hashes.
	dead    []bool
	nDead   int
	patches int
	liveSum idem.Fingerprint
}

func (e *digestEntries) isDead(i int) bool { return e.dead != nil && e.dead[i] }

func (e *digestEntries) key(i int) []byte {
	d := e.data[e.off[i]:]
	n, w := binary.Uvarint(d)
	return d[w : w+int(n)]
}

func (e *digestEntries) hash(i int) idem.RowHash {
	d := e.data[e.off[i]:]
	n, w := binary.Uvarint(d)
	d = d[w+int(n):]
	return idem.RowHash{Hi: binary.BigEndian.Uint64(d), Lo: binary.BigEndian.Uint64(d[8:])}
}

func (e *digestEntries) len() int { return len(e.off) }

// find returns the entry holding key, or -1. Inputs mostly come in the
// order of the previous load's, which is the digest's order, so the entry
// after the last one found is tried first; the hash index is built only on
// the first miss.
func (e *digestEntries) find(key []byte) int {
	if e.cursor < len(e.off) && !e.isDead(e.cursor) && bytes.Equal(e.key(e.cursor), key) {
		e.cursor++
		return e.cursor - 1
	}
	if e.index == nil && !e.buildIndex() {
		return e.scan(key)
	}
	i, ok := e.index[maphash.Bytes(e.seed, key)]
	if !ok || !bytes.Equal(e.key(int(i)), key) {
		return -1
	}
	e.cursor = int(i) + 1
	return int(i)
}

// buildIndex hashes every key. Two keys with one 64-bit hash leave the
// index unbuilt and find falls back to scan: correct, and too rare to
// deserve a second structure.
func (e *digestEntries) buildIndex() bool {
	if e.collided {
		return false
	}
	idx := make(map[uint64]int32, len(e.off))
	for i := range e.off {
		if e.isDead(i) {
			continue
		}
		h := maphash.Bytes(e.seed, e.key(i))
		if _, dup := idx[h]; dup {
			e.collided = true
			return false
		}
		idx[h] = int32(i)
	}
	e.index = idx
	return true
}

func (e *digestEntries) scan(key []byte) int {
	for i := range e.off {
		if !e.isDead(i) && bytes.Equal(e.key(i), key) {
			return i
		}
	}
	return -1
}

func appendEntry(b []byte, key []byte, h idem.RowHash) []byte {
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.BigEndian.AppendUint64(b, h.Hi)
	return binary.BigEndian.AppendUint64(b, h.Lo)
}

// chunks accumulates entries in blocks of at most digestChunk bytes that
// are never copied to grow: each becomes one stored chunk as it is.
type chunks [][]byte

func (c *chunks) add(key []byte, h idem.RowHash) {
	need := binary.MaxVarintLen64 + len(key) + 16
	if n := len(*c); n == 0 || cap((*c)[n-1])-len((*c)[n-1]) < need {
		*c = append(*c, make([]byte, 0, max(digestChunk, need)))
	}
	last := &(*c)[len(*c)-1]
	*last = appendEntry(*last, key, h)
}

// each calls fn for every entry.
func (c chunks) each(fn func(key []byte, h idem.RowHash)) {
	for _, d := range c {
		for len(d) > 0 {
			n, w := binary.Uvarint(d)
			k := d[w : w+int(n)]
			d = d[w+int(n):]
			fn(k, idem.RowHash{Hi: binary.BigEndian.Uint64(d), Lo: binary.BigEndian.Uint64(d[8:])})
			d = d[16:]
		}
	}
}

// forEach lets saveDigest write either kind of entry collection.
type entrySource interface {
	chunkEach(fn func(chunk []byte) error) error
}

func (c chunks) chunkEach(fn func([]byte) error) error {
	for _, d := range c {
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}

// spool collects the input's entries in an unlinked temporary file, so that
// building a digest costs a load no memory however many rows it has.
type spool struct {
	f   *os.File
	w   *bufio.Writer
	buf []byte
	err error
}

func newSpool() (*spool, error) {
	f, err := os.CreateTemp("", "idem-digest-*")
	if err != nil {
		return nil, err
	}
	// Unlinked at once: the file goes away with the process, even a killed one.
	os.Remove(f.Name())
	return &spool{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (s *spool) add(key []byte, h idem.RowHash) {
	if s.err != nil {
		return
	}
	s.buf = appendEntry(s.buf[:0], key, h)
	_, s.err = s.w.Write(s.buf)
}

// chunkEach reads the entries back in blocks of at most digestChunk bytes,
// never splitting an entry.
func (s *spool) chunkEach(fn func([]byte) error) error {
	if s.err != nil {
		return s.err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(s.f, 256<<10)
	chunk := make([]byte, 0, digestChunk)
	for {
		n, err := binary.ReadUvarint(r)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		size := binary.PutUvarint(make([]byte, binary.MaxVarintLen64), n) + int(n) + 16
		if len(chunk) > 0 && len(chunk)+size > digestChunk {
			if err := fn(chunk); err != nil {
				return err
			}
			chunk = make([]byte, 0, digestChunk)
		}
		chunk = binary.AppendUvarint(chunk, n)
		start := len(chunk)
		chunk = append(chunk, make([]byte, int(n)+16)...)
		if _, err := io.ReadFull(r, chunk[start:]); err != nil {
			return err
		}
	}
	if len(chunk) > 0 {
		return fn(chunk)
	}
	return nil
}

func (s *spool) Close() error { return s.f.Close() }

func parseEntries(data []byte) (*digestEntries, bool) {
	e := &digestEntries{data: data, seed: maphash.MakeSeed()}
	e.off = make([]uint32, 0, len(data)/24)
	for pos := 0; pos < len(data); {
		n, w := binary.Uvarint(data[pos:])
		if w <= 0 || uint64(len(data)-pos-w) < n+16 || pos > math.MaxUint32 {
			return nil, false
		}
		e.off = append(e.off, uint32(pos))
		pos += w + int(n) + 16
	}
	return e, true
}

// encodeKey is the canonical, unambiguous encoding of a row's key values.
func encodeKey(b []byte, row idem.Row, keyIdx []int) []byte {
	for _, i := range keyIdx {
		b = binary.AppendUvarint(b, uint64(len(row[i].S)))
		b = append(b, row[i].S...)
	}
	return b
}

func decodeKey(k []byte, n int) []string {
	out := make([]string, 0, n)
	for len(k) > 0 {
		l, w := binary.Uvarint(k)
		out = append(out, string(k[w:w+int(l)]))
		k = k[w+int(l):]
	}
	return out
}

// loadDigest returns the scope's digest when it is valid for this plan: same
// columns and key, and the scope unchanged since it was written.
func loadDigest(ctx context.Context, d Dialect, tx Tx, p *idem.Plan, mayAside bool) (*digestEntries, error) {
	q := fmt.Sprintf("SELECT %s, %s, %s, %s FROM %s WHERE %s = %s AND %s = %s ORDER BY %s",
		d.Quote("state_token"), d.Quote("schema_sig"), d.Quote("data"), d.Quote("chunk"), d.Quote(DigestTable),
		d.Quote("table_name"), d.Placeholder(1), d.Quote("partition_label"), d.Placeholder(2), d.Quote("chunk"))
	// The scope's token takes a scan of it; a backend that can run that on
	// another connection does so while the digest streams in here.
	type tokenResult struct {
		tok string
		err error
	}
	var aside chan tokenResult
	if a, ok := tx.(AsideTokener); ok && mayAside {
		actx, cancel := context.WithCancel(ctx)
		defer cancel() // an unusable digest needs no token
		aside = make(chan tokenResult, 1)
		go func() {
			t, err := a.StateTokenAside(actx, p.Table, p.Partition)
			aside <- tokenResult{t, err}
		}()
	}
	var tok, sig string
	var parts, patches [][]byte
	total := 0
	err := tx.Query(ctx, q, []any{p.Table, p.Partition.String()}, func(v []any) error {
		tok, sig = fmt.Sprint(v[0]), fmt.Sprint(v[1])
		var b []byte
		switch x := v[2].(type) {
		case []byte:
			b = x
		case string:
			b = []byte(x)
		}
		if toInt(v[3]) >= patchChunk0 {
			patches = append(patches, b)
			return nil
		}
		parts = append(parts, b)
		total += len(b)
		return nil
	})
	if err != nil || tok == "" || sig != schemaSig(p) {
		return nil, err
	}
	var cur string
	if aside != nil {
		r := <-aside
		cur, err = r.tok, r.err
	} else {
		cur, err = tx.StateToken(ctx, p.Table, p.Partition)
	}
	if err != nil || cur != tok {
		return nil, err
	}
	data := make([]byte, 0, total)
	for _, b := range parts {
		data = append(data, b...)
	}
	e, ok := parseEntries(data)
	for _, pb := range patches {
		ok = ok && e.applyPatch(pb)
	}
	if !ok {
		return nil, nil // unusable: take the full path and rewrite it
	}
	for i := range e.off {
		if !e.isDead(i) {
			e.liveSum.Add(e.hash(i))
		}
	}
	e.token = tok
	return e, nil
}

// digester sits between the validated input and the backend's staging. With
// an old digest it passes on only rows that are new or changed; in every
// case it records the input's entries for the next digest.
type digester struct {
	in       *idem.Input
	keyIdx   []int
	old      *digestEntries
	strategy idem.Strategy

	rowsIn  int64
	skipped int64 // insert-missing: existing keys not written
	seen    []int64
	newKeys map[string]idem.Pos
	changed map[int32]idem.RowHash

	keyBuf []byte
	// out spools the input's entries, in input order, when there is no
	// old digest to derive the next one from; added holds the entries of
	// keys the old digest lacks.
	out      *spool
	added    chunks
	nAdded   int
	overflow bool
}

func newDigester(in *idem.Input, p *idem.Plan, old *digestEntries) (*digester, error) {
	g := &digester{in: in, keyIdx: p.KeyIdx, old: old, strategy: p.Strategy}
	if old != nil {
		g.seen = make([]int64, old.len())
		g.newKeys = map[string]idem.Pos{}
		g.changed = map[int32]idem.RowHash{}
		return g, nil
	}
	out, err := newSpool()
	if err != nil {
		return nil, fmt.Errorf("row digest: %w", err)
	}
	g.out = out
	return g, nil
}

// Close drops the spooled entries.
func (g *digester) Close() error {
	if g.out == nil {
		return nil
	}
	return g.out.Close()
}

func (g *digester) Columns() idem.Schema { return g.in.Columns() }
func (g *digester) Pos() idem.Pos        { return g.in.Pos() }

// Next returns the next row the backend must write.
func (g *digester) Next() (idem.Row, error) {
	for {
		row, err := g.in.Next()
		if err != nil {
			return nil, err
		}
		g.rowsIn++
		h := g.in.LastHash()
		g.keyBuf = encodeKey(g.keyBuf[:0], row, g.keyIdx)
		if !g.overflow {
			if g.rowsIn > DigestMaxRows {
				g.overflow = true
			} else if g.out != nil {
				g.out.add(g.keyBuf, h)
			}
		}
		if g.old == nil {
			return row, nil
		}
		pos := g.in.Pos()
		if i := g.old.find(g.keyBuf); i >= 0 {
			if g.seen[i] != 0 {
				return nil, g.dup(pos, "line "+fmt.Sprint(g.seen[i]))
			}
			g.seen[i] = max(pos.Line, 1)
			if g.old.hash(i) == h {
				continue
			}
			if g.strategy == idem.InsertMissing {
				g.skipped++
				continue
			}
			g.changed[int32(i)] = h
			return row, nil
		}
		k := string(g.keyBuf)
		if first, ok := g.newKeys[k]; ok {
			return nil, g.dup(pos, fmt.Sprintf("%s:%d", first.File, first.Line))
		}
		g.newKeys[k] = pos
		g.added.add(g.keyBuf, h)
		g.nAdded++
		return row, nil
	}
}

func (g *digester) dup(pos idem.Pos, first string) error {
	return &idem.InputError{File: pos.File, Line: pos.Line,
		Msg: fmt.Sprintf("duplicate key: the same key is at %s (use --dedupe first|last to keep one)", first)}
}

// gone lists the old keys the input no longer has.
func (g *digester) gone() [][]byte {
	var out [][]byte
	for i, s := range g.seen {
		if s == 0 && !g.old.isDead(i) {
			out = append(out, g.old.key(i))
		}
	}
	return out
}

// next is the digest of the scope after the load, whole: the input's
// entries when there was no old digest, otherwise the old live entries
// with the changes applied, less those the strategy deleted, plus the
// added ones; with the scope's fingerprint (their sum) in the second case.
func (g *digester) next(replaced bool) (entrySource, idem.Fingerprint, bool, error) {
	if g.overflow {
		return nil, idem.Fingerprint{}, false, nil
	}
	if g.old == nil {
		return g.out, idem.Fingerprint{}, true, nil
	}
	var c chunks
	var fp idem.Fingerprint
	for i := 0; i < g.old.len(); i++ {
		if g.old.isDead(i) || replaced && g.seen[i] == 0 {
			continue
		}
		h := g.old.hash(i)
		if ch, ok := g.changed[int32(i)]; ok {
			h = ch
		}
		c.add(g.old.key(i), h)
		fp.Add(h)
	}
	g.added.each(func(k []byte, h idem.RowHash) {
		c.add(k, h)
		fp.Add(h)
	})
	if fp.Rows > DigestMaxRows {
		return nil, fp, false, nil
	}
	return c, fp, true, nil
}

// saveDigest replaces the scope's digest; data == nil just drops it.
func saveDigest(ctx context.Context, d Dialect, tx Tx, p *idem.Plan, data entrySource, token string) error {
	del := fmt.Sprintf("DELETE FROM %s WHERE %s = %s AND %s = %s", d.Quote(DigestTable),
		d.Quote("table_name"), d.Placeholder(1), d.Quote("partition_label"), d.Placeholder(2))
	if _, err := tx.Exec(ctx, del, p.Table, p.Partition.String()); err != nil {
		return err
	}
	if data == nil {
		return nil
	}
	ins := fmt.Sprintf("INSERT INTO %s (%s, %s, %s, %s, %s, %s) VALUES (%s, %s, %s, %s, %s, %s)", d.Quote(DigestTable),
		d.Quote("table_name"), d.Quote("partition_label"), d.Quote("chunk"), d.Quote("state_token"), d.Quote("schema_sig"), d.Quote("data"),
		d.Placeholder(1), d.Placeholder(2), d.Placeholder(3), d.Placeholder(4), d.Placeholder(5), d.Placeholder(6))
	sig := schemaSig(p)
	var n int64
	err := data.chunkEach(func(c []byte) error {
		_, err := tx.Exec(ctx, ins, p.Table, p.Partition.String(), n, token, sig, c)
		n++
		return err
	})
	if err == nil && n == 0 {
		// An empty scope still has a valid (empty) digest.
		_, err = tx.Exec(ctx, ins, p.Table, p.Partition.String(), int64(0), token, sig, []byte{})
	}
	return err
}

// deleteKeys deletes rows by key, a batch of keys per statement.
func (p *Planner) deleteKeys(ctx context.Context, keys [][]byte) (int64, error) {
	var total int64
	err := p.keyBatches(keys, "", func(in string, args []any) error {
		c, err := p.X.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s", p.table(), in), args...)
		total += c
		return err
	})
	return total, err
}

// keyBatches calls fn with a predicate "key IN (...)" and its bound
// arguments for each batch of encoded keys; prefix qualifies the key
// columns.
func (p *Planner) keyBatches(keys [][]byte, prefix string, fn func(in string, args []any) error) error {
	const batch = 500
	cols := make([]idem.Column, len(p.Plan.KeyIdx))
	for i, k := range p.Plan.KeyIdx {
		cols[i] = p.Plan.Columns[k]
	}
	lhs := p.keyList(prefix)
	if len(cols) > 1 {
		lhs = "(" + lhs + ")"
	}
	for len(keys) > 0 {
		n := min(len(keys), batch)
		var tuples []string
		var args []any
		for _, k := range keys[:n] {
			vals := decodeKey(k, len(cols))
			ph := make([]string, len(vals))
			for i, v := range vals {
				args = append(args, p.D.Bind(cols[i].Type, idem.V(v)))
				ph[i] = p.D.Placeholder(len(args))
			}
			t := strings.Join(ph, ", ")
			if len(cols) > 1 {
				t = "(" + t + ")"
			}
			tuples = append(tuples, t)
		}
		if err := fn(lhs+" IN ("+strings.Join(tuples, ", ")+")", args); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}
