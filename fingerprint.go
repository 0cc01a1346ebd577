package idem

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"sort"
)

// Fingerprint is an order-independent, duplicate-sensitive content hash of a
// multiset of rows.
//
// Encoding, so that other tools can reproduce it: the columns taking part are
// ordered by name (byte order). A row is encoded as the concatenation, per
// column, of uvarint(len(name)) name, one tag byte and, unless the tag is
// 0x00 (NULL), uvarint(len(value)) value, where value is the canonical text
// form of canon.go and the tag is 'n' for integer and numeric (so 1 and 1.0
// agree across backends), 'b' boolean, 'd' date, 't' timestamp, 's' text.
// The row hash is the first 16 bytes of SHA-256 of that encoding, read as a
// big-endian 128-bit integer. The fingerprint is the sum of the row hashes
// modulo 2^128 (a multiset hash: the order of rows does not matter, and a
// duplicated row adds its hash twice, which XOR would cancel), printed as 32
// hex digits, with the row count alongside.
type Fingerprint struct {
	Rows   int64
	hi, lo uint64
}

// RowHash is the 128-bit hash of one row.
type RowHash struct{ Hi, Lo uint64 }

// Add includes one row.
func (f *Fingerprint) Add(h RowHash) {
	var c uint64
	f.lo, c = bits.Add64(f.lo, h.Lo, 0)
	f.hi, _ = bits.Add64(f.hi, h.Hi, c)
	f.Rows++
}

// Sub removes one row (the inverse of Add).
func (f *Fingerprint) Sub(h RowHash) {
	var b uint64
	f.lo, b = bits.Sub64(f.lo, h.Lo, 0)
	f.hi, _ = bits.Sub64(f.hi, h.Hi, b)
	f.Rows--
}

// Hex renders the 128-bit sum.
func (f Fingerprint) Hex() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], f.hi)
	binary.BigEndian.PutUint64(b[8:], f.lo)
	return hex.EncodeToString(b[:])
}

func (f Fingerprint) String() string { return fmt.Sprintf("rows=%d fingerprint=%s", f.Rows, f.Hex()) }

// ParseFingerprint reads a Hex form back (the row count is not part of it).
func ParseFingerprint(s string, rows int64) (Fingerprint, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return Fingerprint{}, BadInput("%q is not a fingerprint (32 hex digits)", s)
	}
	return Fingerprint{Rows: rows, hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}, nil
}

// RowHasher hashes rows of one schema. It is not safe for concurrent use.
type RowHasher struct {
	order []int    // schema positions in name order
	pre   [][]byte // per ordered column: uvarint(len(name)) name
	tags  []byte
	buf   []byte
}

// NewRowHasher hashes rows laid out as schema, leaving out the excluded
// column names.
func NewRowHasher(schema Schema, exclude ...string) *RowHasher {
	skip := map[string]bool{}
	for _, e := range exclude {
		skip[e] = true
	}
	h := &RowHasher{}
	for i, c := range schema {
		if !skip[c.Name] {
			h.order = append(h.order, i)
		}
	}
	sort.Slice(h.order, func(a, b int) bool { return schema[h.order[a]].Name < schema[h.order[b]].Name })
	for _, i := range h.order {
		name := schema[i].Name
		p := binary.AppendUvarint(nil, uint64(len(name)))
		h.pre = append(h.pre, append(p, name...))
		h.tags = append(h.tags, typeTag(schema[i].Type))
	}
	return h
}

func typeTag(t Type) byte {
	switch t {
	case TypeInteger, TypeNumeric:
		return 'n'
	case TypeBoolean:
		return 'b'
	case TypeDate:
		return 'd'
	case TypeTimestamp:
		return 't'
	}
	return 's'
}

// Hash returns the row's 128-bit hash. Values must be canonical.
func (h *RowHasher) Hash(row Row) RowHash {
	b := h.buf[:0]
	for k, i := range h.order {
		b = append(b, h.pre[k]...)
		v := row[i]
		if v.Null {
			b = append(b, 0)
			continue
		}
		b = append(b, h.tags[k])
		b = binary.AppendUvarint(b, uint64(len(v.S)))
		b = append(b, v.S...)
	}
	h.buf = b
	sum := sha256.Sum256(b)
	return RowHash{Hi: binary.BigEndian.Uint64(sum[:8]), Lo: binary.BigEndian.Uint64(sum[8:16])}
}
