package idem

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Segments and spool groups of a Snapshot. A diff descends only into the
// segments whose fingerprints differ, so with 4096 segments a 10M-row table
// with 100 changed rows re-reads about 100×2,400 rows per side; the spool
// is split into 64 files so a diff holds at most 1/64 of either side in
// memory even when every segment differs.
const (
	snapSegments = 4096
	snapGroups   = 64
)

// SnapshotOptions says what a Snapshot covers.
type SnapshotOptions struct {
	// Key columns match rows between two states: with a key, a row whose
	// key is in both with other values is "changed"; without, it shows as
	// one removed and one added row.
	Key []string
	// Exclude leaves columns out of every comparison (as checksum
	// --exclude).
	Exclude []string
	// Dir is where the spool lives (a new temporary directory inside it).
	Dir string
	// NoSpool keeps only the fingerprints: Compare then reports that the
	// states differ but not how.
	NoSpool bool
}

// Snapshot is the content of a table or partition at one moment: its
// fingerprint, one fingerprint per segment (rows are assigned to segments
// by a hash of their key, or of the whole row without a key), and the
// canonical rows spooled to local disk by segment group, so two states can
// be compared later even though the table has moved on.
type Snapshot struct {
	Table     string
	Partition *Partition
	Schema    Schema // the table's columns, excluded ones included
	FP        Fingerprint
	Segments  [snapSegments]Fingerprint

	key      []int // positions of the key columns in Schema
	cols     []int // positions of the compared columns, in name order
	dir      string
	spooled  bool
	scratch  []byte
	keyBuf   []byte
	closeErr error
}

// TakeSnapshot reads a table or partition once. The table must exist (bad
// input otherwise); an empty partition is an empty snapshot, since a job
// under test may legitimately leave one empty.
func TakeSnapshot(ctx context.Context, t Target, table string, part *Partition, o SnapshotOptions) (*Snapshot, error) {
	schema, err := CheckScope(ctx, t, table, part, append(append([]string{}, o.Key...), o.Exclude...))
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Table: table, Partition: part, Schema: schema, spooled: !o.NoSpool}
	skip := map[string]bool{}
	for _, e := range o.Exclude {
		skip[e] = true
	}
	for _, k := range o.Key {
		s.key = append(s.key, schema.Index(k))
	}
	h := NewRowHasher(schema, o.Exclude...)
	s.cols = h.order
	var groups [snapGroups]*bufio.Writer
	var files [snapGroups]*os.File
	if s.spooled {
		if s.dir, err = os.MkdirTemp(o.Dir, "idem-snapshot-"); err != nil {
			return nil, fmt.Errorf("snapshot spool: %w", err)
		}
		for g := range groups {
			if files[g], err = os.Create(filepath.Join(s.dir, fmt.Sprintf("%02d", g))); err != nil {
				s.Close()
				return nil, fmt.Errorf("snapshot spool: %w", err)
			}
			groups[g] = bufio.NewWriterSize(files[g], 32<<10)
		}
	}
	var rec []byte
	err = t.Scan(ctx, table, part, func(sc Schema, r Row) error {
		if len(sc) != len(schema) {
			return fmt.Errorf("table %q changed its columns while being read", table)
		}
		rh := h.Hash(r)
		seg := s.segment(r, rh)
		s.FP.Add(rh)
		s.Segments[seg].Add(rh)
		if !s.spooled {
			return nil
		}
		rec = s.encode(rec[:0], seg, rh, r)
		_, err := groups[seg%snapGroups].Write(rec)
		return err
	})
	for g := range groups {
		if groups[g] != nil {
			if ferr := groups[g].Flush(); err == nil && ferr != nil {
				err = fmt.Errorf("snapshot spool: %w", ferr)
			}
			files[g].Close()
		}
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close removes the spool.
func (s *Snapshot) Close() error {
	if s.dir != "" {
		s.closeErr = os.RemoveAll(s.dir)
		s.dir = ""
	}
	return s.closeErr
}

// segment places a row: by its key when there is one, so both versions of
// a changed row land in the same segment, else by its hash.
func (s *Snapshot) segment(r Row, rh RowHash) int {
	if len(s.key) == 0 {
		return int(rh.Hi % snapSegments)
	}
	s.keyBuf = appendKey(s.keyBuf[:0], r, s.key)
	// FNV-1a, inline: hash/fnv would allocate a hasher per row.
	h := uint64(14695981039346656037)
	for _, c := range s.keyBuf {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return int(h % snapSegments)
}

// appendKey encodes the key values unambiguously (length-prefixed, NULL
// distinct from empty).
func appendKey(b []byte, r Row, key []int) []byte {
	for _, i := range key {
		b = appendVal(b, r[i])
	}
	return b
}

func appendVal(b []byte, v Value) []byte {
	if v.Null {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(v.S)))
	return append(b, v.S...)
}

// encode spools one row: uvarint(len) then segment, row hash and every
// column of Schema (excluded ones too, so samples can show them).
func (s *Snapshot) encode(b []byte, seg int, rh RowHash, r Row) []byte {
	p := binary.AppendUvarint(s.scratch[:0], uint64(seg))
	p = binary.BigEndian.AppendUint64(p, rh.Hi)
	p = binary.BigEndian.AppendUint64(p, rh.Lo)
	for _, v := range r {
		p = appendVal(p, v)
	}
	s.scratch = p
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// spooledRow is one row read back from a spool.
type spooledRow struct {
	hash RowHash
	row  Row
}

var errCorruptSpool = errors.New("snapshot spool is corrupt")

// readGroup calls fn for each spooled row of group g whose segment is in
// want.
func (s *Snapshot) readGroup(g int, want map[int]bool, fn func(seg int, sr spooledRow) error) error {
	if !s.spooled || s.dir == "" {
		return errors.New("snapshot has no spool")
	}
	f, err := os.Open(filepath.Join(s.dir, fmt.Sprintf("%02d", g)))
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var buf []byte
	for {
		n, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errCorruptSpool
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return errCorruptSpool
		}
		seg, k := binary.Uvarint(buf)
		if k <= 0 || len(buf) < k+16 {
			return errCorruptSpool
		}
		if !want[int(seg)] {
			continue
		}
		sr := spooledRow{hash: RowHash{Hi: binary.BigEndian.Uint64(buf[k:]), Lo: binary.BigEndian.Uint64(buf[k+8:])}}
		p := buf[k+16:]
		sr.row = make(Row, len(s.Schema))
		for i := range sr.row {
			if len(p) == 0 {
				return errCorruptSpool
			}
			if p[0] == 0 {
				sr.row[i] = Null
				p = p[1:]
				continue
			}
			l, m := binary.Uvarint(p[1:])
			if m <= 0 || len(p) < 1+m+int(l) {
				return errCorruptSpool
			}
			sr.row[i] = V(string(p[1+m : 1+m+int(l)]))
			p = p[1+m+int(l):]
		}
		if err := fn(int(seg), sr); err != nil {
			return err
		}
	}
}

// TakeSnapshots reads two scopes at once (two tables, or one table on two
// targets), for diffing live states.
func TakeSnapshots(ctx context.Context, a, b Target, tableA, tableB string, part *Partition, o SnapshotOptions) (*Snapshot, *Snapshot, error) {
	var sa, sb *Snapshot
	var ea, eb error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sa, ea = TakeSnapshot(ctx, a, tableA, part, o) }()
	go func() { defer wg.Done(); sb, eb = TakeSnapshot(ctx, b, tableB, part, o) }()
	wg.Wait()
	if err := errors.Join(ea, eb); err != nil {
		if sa != nil {
			sa.Close()
		}
		if sb != nil {
			sb.Close()
		}
		return nil, nil, err
	}
	return sa, sb, nil
}
