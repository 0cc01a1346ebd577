package sqlplan

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/idemhq/idem"
)

// Digest patches. A load that changes a few rows of a big scope would
// otherwise rewrite the scope's whole digest (24 MB for 1M rows) to record
// them. Instead it appends a patch: the positions whose hash changed, with
// the new hash, the positions whose key is gone, and the added entries,
// which take the next positions. The digest is then its base chunks with
// every patch applied in order. A load rewrites the digest whole once the
// patches pile up (maxPatches, or more than a patchShare of the entries
// touched or dead), so reading it never costs much more than the base.
//
// Hand-written: the format is a few varints over the digest's own entry
// encoding.

// patchChunk0 is the chunk number of a scope's first patch; base chunks
// count from 0 and stay far below it.
const patchChunk0 = int64(1) << 40

const (
	maxPatches = 16
	// patchShare: a patch is written only while the patches' changes and
	// dead entries stay within 1/patchShare of the entries.
	patchShare = 8
)

// applyPatch applies one stored patch; false when it does not fit (the
// digest is then unusable and the load takes the full path).
func (e *digestEntries) applyPatch(b []byte) bool {
	if len(b) == 0 || b[0] != 'p' {
		return false
	}
	b = b[1:]
	next := func() (int, bool) {
		v, w := binary.Uvarint(b)
		if w <= 0 || v >= uint64(len(e.off)) {
			return 0, false
		}
		b = b[w:]
		return int(v), true
	}
	count := func() (int, bool) {
		v, w := binary.Uvarint(b)
		if w <= 0 || v > uint64(len(b)) {
			return 0, false
		}
		b = b[w:]
		return int(v), true
	}
	n, ok := count()
	if !ok {
		return false
	}
	for range n {
		i, ok := next()
		if !ok || len(b) < 16 || e.isDead(i) {
			return false
		}
		d := e.data[e.off[i]:]
		kn, kw := binary.Uvarint(d)
		copy(d[kw+int(kn):kw+int(kn)+16], b[:16])
		b = b[16:]
	}
	if n, ok = count(); !ok {
		return false
	}
	for range n {
		i, ok := next()
		if !ok || e.isDead(i) {
			return false
		}
		if e.dead == nil {
			e.dead = make([]bool, len(e.off), cap(e.off))
		}
		e.dead[i] = true
		e.nDead++
	}
	// The added entries, appended as the base's are.
	for pos := 0; pos < len(b); {
		kn, w := binary.Uvarint(b[pos:])
		if w <= 0 || uint64(len(b)-pos-w) < kn+16 {
			return false
		}
		size := w + int(kn) + 16
		if len(e.data)+size > 1<<32-1 {
			return false
		}
		e.off = append(e.off, uint32(len(e.data)))
		e.data = append(e.data, b[pos:pos+size]...)
		if e.dead != nil {
			e.dead = append(e.dead, false)
		}
		pos += size
	}
	e.patches++
	return true
}

// patch is this load's change to the old digest as a stored patch, with
// the scope's fingerprint after it. ok is false when the digest should be
// rewritten whole instead (no old digest, or patches have piled up); keep
// is false when the scope is too big to keep a digest at all.
func (g *digester) patch(replaced bool) (b []byte, fp idem.Fingerprint, ok, keep bool) {
	e := g.old
	if g.overflow || e == nil {
		return nil, fp, false, !g.overflow
	}
	var gone []int
	if replaced {
		for i, s := range g.seen {
			if s == 0 && !e.isDead(i) {
				gone = append(gone, i)
			}
		}
	}
	fp = e.liveSum
	for i, h := range g.changed {
		fp.Sub(e.hash(int(i)))
		fp.Add(h)
	}
	for _, i := range gone {
		fp.Sub(e.hash(i))
	}
	g.added.each(func(_ []byte, h idem.RowHash) { fp.Add(h) })
	if fp.Rows > DigestMaxRows {
		return nil, fp, false, false
	}
	limit := e.len() / patchShare
	if e.patches >= maxPatches || len(g.changed)+len(gone)+g.nAdded > limit || e.nDead+len(gone) > limit {
		return nil, fp, false, true
	}
	changed := make([]int32, 0, len(g.changed))
	for i := range g.changed {
		changed = append(changed, i)
	}
	slices.Sort(changed) // the same load writes the same bytes
	b = append(b, 'p')
	b = binary.AppendUvarint(b, uint64(len(changed)))
	for _, i := range changed {
		h := g.changed[i]
		b = binary.AppendUvarint(b, uint64(i))
		b = binary.BigEndian.AppendUint64(b, h.Hi)
		b = binary.BigEndian.AppendUint64(b, h.Lo)
	}
	b = binary.AppendUvarint(b, uint64(len(gone)))
	for _, i := range gone {
		b = binary.AppendUvarint(b, uint64(i))
	}
	for _, c := range g.added {
		b = append(b, c...)
	}
	return b, fp, true, true
}

// savePatch appends patch to the scope's digest and moves every chunk to
// the scope's new state token.
func savePatch(ctx context.Context, d Dialect, tx Tx, p *idem.Plan, seq int, patch []byte, token string) error {
	q := d.Quote
	// Placeholders in the order they appear: SQLite's are positional.
	upd := fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s = %s AND %s = %s", q(DigestTable),
		q("state_token"), d.Placeholder(1), q("table_name"), d.Placeholder(2), q("partition_label"), d.Placeholder(3))
	n, err := tx.Exec(ctx, upd, token, p.Table, p.Partition.String())
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("row digest of %s vanished", p.Table)
	}
	ins := fmt.Sprintf("INSERT INTO %s (%s, %s, %s, %s, %s, %s) VALUES (%s, %s, %s, %s, %s, %s)", q(DigestTable),
		q("table_name"), q("partition_label"), q("chunk"), q("state_token"), q("schema_sig"), q("data"),
		d.Placeholder(1), d.Placeholder(2), d.Placeholder(3), d.Placeholder(4), d.Placeholder(5), d.Placeholder(6))
	_, err = tx.Exec(ctx, ins, p.Table, p.Partition.String(), patchChunk0+int64(seq), token, schemaSig(p), patch)
	return err
}
