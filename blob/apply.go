package blob

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/idemhq/idem"
)

// sharedLocker is a store whose locks can be shared (flock): then loads of
// different partitions of one table run side by side.
type sharedLocker interface{ SharedLocks() bool }

// SharedLocks: flock has shared locks.
func (*Local) SharedLocks() bool { return true }

// lockState takes the load's locks and reads the table under them. A
// partition load takes the table lock shared and its partition's lock
// exclusive; a load that must rewrite more than its own folder (no
// --partition, or a table not partitioned by that column) takes the table
// lock exclusive.
func (t *Target) lockState(ctx context.Context, p *idem.Plan) ([]Lock, *tableState, error) {
	sl, ok := t.st.(sharedLocker)
	shared := p.Partition != nil && ok && sl.SharedLocks()
	for {
		var locks []Lock
		release := func() {
			for i := len(locks) - 1; i >= 0; i-- {
				locks[i].Unlock(context.WithoutCancel(ctx))
			}
		}
		l, err := t.st.Lock(ctx, tableDir(p.Table)+lockName, shared, p.LockTimeout)
		if err != nil {
			return nil, nil, err
		}
		locks = append(locks, l)
		if shared {
			name := strings.TrimSuffix(segDir(p.Partition.Column, idem.V(p.Partition.Value)), "/")
			l, err := t.st.Lock(ctx, tableDir(p.Table)+lockName+"."+name, false, p.LockTimeout)
			if err != nil {
				release()
				return nil, nil, err
			}
			locks = append(locks, l)
		}
		ts, err := t.readState(ctx, p.Table)
		if err != nil {
			release()
			return nil, nil, err
		}
		if shared && !ts.lay.single(p.Partition) {
			release()
			shared = false
			continue
		}
		return locks, ts, nil
	}
}

// keyer encodes key values so that byte order is the key's natural order
// (integers by value), for map lookups and for sorting rows.
type keyer struct {
	idx   []int
	types []idem.Type
	buf   []byte
}

func (k *keyer) key(r idem.Row) string {
	b := k.buf[:0]
	for j, i := range k.idx {
		v := r[i].S
		if k.types[j] == idem.TypeInteger {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				b = append(b, 'i')
				b = binary.BigEndian.AppendUint64(b, uint64(n)^(1<<63))
				continue
			}
		}
		// Canonical text never holds NUL, so NUL ends a value.
		b = append(b, 's')
		b = append(b, v...)
		b = append(b, 0)
	}
	k.buf = b
	return string(b)
}

type oldRow struct {
	dir     string
	row     idem.Row
	h       idem.RowHash
	changed bool
}

// hrow is a row with its fingerprint hash, computed once: hashing is a
// large part of a load's CPU time.
type hrow struct {
	row idem.Row
	h   idem.RowHash
}

// sameRows counts the rows a and b have in common, as multisets.
func sameRows(a, b []hrow) int64 {
	left := make(map[idem.RowHash]int, len(a))
	for _, r := range a {
		left[r.h]++
	}
	var n int64
	for _, r := range b {
		if left[r.h] > 0 {
			left[r.h]--
			n++
		}
	}
	return n
}

// onlyPartitionColumn refuses a partitioned table whose one column is the
// partition column: that column lives in the folder names, so the files
// would hold no column at all, and no format can be read back from that.
func onlyPartitionColumn(table string, cols idem.Schema, partCol string) error {
	if partCol != "" && len(cols) == 1 && cols[0].Name == partCol {
		return idem.BadInput("table %q: its only column is the partition column %q, whose values are stored in the folder names; a partitioned file table needs at least one other column", table, partCol)
	}
	return nil
}

// Apply runs one load: lock, read the folders in scope, merge, write the
// changed folders' new files, commit each folder's manifest, record the
// run, delete replaced files.
func (t *Target) Apply(ctx context.Context, p *idem.Plan, in *idem.Input) (*idem.Result, error) {
	if err := checkPartitionValue(p.Partition); err != nil {
		return nil, err
	}
	if !p.Exists {
		// Checked before the lock too, whose file would be the only
		// trace a refused load leaves of a new table.
		partCol := t.partitionBy
		if p.Partition != nil {
			partCol = p.Partition.Column
		}
		if err := onlyPartitionColumn(p.Table, p.Columns, partCol); err != nil {
			return nil, err
		}
	}
	locks, ts, err := t.lockState(ctx, p)
	if err != nil {
		return nil, err
	}
	defer func() {
		for i := len(locks) - 1; i >= 0; i-- {
			locks[i].Unlock(context.WithoutCancel(ctx))
		}
	}()

	// The table's columns now, under the lock, and what this load adds.
	cur := ts.schema
	out := append(idem.Schema{}, cur...)
	for _, c := range p.Columns {
		j := cur.Index(c.Name)
		if j < 0 {
			if !p.Evolve && p.Exists && len(ts.mans) > 0 {
				return nil, idem.BadInput("table %q has no column %q (add --evolve to add it)", p.Table, c.Name)
			}
			out = append(out, c)
			continue
		}
		if cur[j].Type != c.Type {
			return nil, fmt.Errorf("table %q column %q changed type to %s while this load was planned; rerun", p.Table, c.Name, cur[j].Type)
		}
	}
	grown := len(out) > len(cur)

	partCol := ts.lay.partCol
	if len(ts.mans) == 0 && !ts.lay.root {
		// A new table is partitioned by its first load's --partition
		// column, or by the target's partition_by column.
		if p.Partition != nil {
			partCol = p.Partition.Column
		} else {
			partCol = t.partitionBy
		}
	}
	if t.partitionBy != "" {
		switch {
		case p.Partition != nil && p.Partition.Column != t.partitionBy:
			return nil, idem.BadInput("--partition %s: the target's partition_by is %q", p.Partition, t.partitionBy)
		case partCol != t.partitionBy && (ts.lay.root || partCol != ""):
			what := "is not partitioned"
			if partCol != "" {
				what = fmt.Sprintf("is partitioned by %q", partCol)
			}
			return nil, idem.BadInput("partition_by=%s: table %q already exists and %s", t.partitionBy, p.Table, what)
		}
	}
	partOut := -1
	if partCol != "" {
		if partOut = out.Index(partCol); partOut < 0 {
			if len(ts.mans) == 0 {
				return nil, idem.BadInput("partition_by=%s: the input has no column %q", partCol, partCol)
			}
			return nil, fmt.Errorf("%s: table %q is partitioned by %q, which is not among its columns", t.st, p.Table, partCol)
		}
		if err := onlyPartitionColumn(p.Table, out, partCol); err != nil {
			return nil, err
		}
	}
	segVal := map[string]idem.Value{"": idem.Null}
	segOf := func(r idem.Row) string {
		if partOut < 0 {
			return ""
		}
		d := segDir(partCol, r[partOut])
		segVal[d] = r[partOut]
		return d
	}

	// The whole input, validated, in the table's column order.
	outIdx := make([]int, len(p.Columns))
	for i, c := range p.Columns {
		outIdx[i] = out.Index(c.Name)
	}
	keyed := len(p.Key) > 0
	ky := &keyer{}
	for _, k := range p.Key {
		j := out.Index(k)
		ky.idx = append(ky.idx, j)
		ky.types = append(ky.types, out[j].Type)
	}
	h := idem.NewRowHasher(out)
	// The input's own hash is the table's when the load writes every
	// column of the table (the hasher orders columns by name).
	sameHash := len(out) == len(p.Columns)
	// A keyed load reads the whole input first (duplicates and matches
	// may cross folders). A keyless one decides folder by folder, so its
	// rows wait on disk, grouped by folder, and only one folder's rows are
	// in memory at a time.
	var rows []hrow
	var poss []idem.Pos
	var rowsIn int64
	var sp *spill
	fpNew := map[string]*idem.Fingerprint{}
	if !keyed {
		lim := t.spillLimit
		if lim <= 0 {
			lim = spillBuffer
		}
		sp = newSpill(lim)
		defer sp.Close()
	}
	var rowBuf idem.Row
	for n := 0; ; n++ {
		r, err := in.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		row := rowBuf // the spill copies the values
		if keyed || row == nil {
			row = make(idem.Row, len(out))
		}
		for j := range row {
			row[j] = idem.Null
		}
		for i, v := range r {
			row[outIdx[i]] = v
		}
		rh := in.LastHash()
		if !sameHash {
			rh = h.Hash(row)
		}
		rowsIn++
		if keyed {
			rows = append(rows, hrow{row, rh})
			poss = append(poss, in.Pos())
		} else {
			d := segOf(row)
			fp := fpNew[d]
			if fp == nil {
				fp = &idem.Fingerprint{}
				fpNew[d] = fp
			}
			fp.Add(rh)
			if err := sp.add(d, rh, row); err != nil {
				return nil, err
			}
			rowBuf = row
		}
		if n&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	var skipped int64
	if keyed {
		first := make(map[string]int, len(rows))
		kept := rows[:0]
		keptPos := poss[:0]
		for i, r := range rows {
			k := ky.key(r.row)
			if j, dup := first[k]; dup {
				switch p.Dedupe {
				case idem.DedupeFirst:
					skipped++
					continue
				case idem.DedupeLast:
					kept[j] = r
					skipped++
					continue
				}
				vals := make([]string, len(ky.idx))
				for x, c := range ky.idx {
					vals[x] = r.row[c].S
				}
				return nil, &idem.InputError{File: poss[i].File, Line: poss[i].Line,
					Msg: fmt.Sprintf("duplicate key (%s)=(%s): the same key is at %s:%d (use --dedupe first|last to keep one)",
						strings.Join(p.Key, ", "), strings.Join(vals, ", "), keptPos[j].File, keptPos[j].Line)}
			}
			first[k] = len(kept)
			kept = append(kept, r)
			keptPos = append(keptPos, poss[i])
		}
		rows = kept
	}
	if rowsIn == 0 && !p.AllowEmpty && (p.Strategy == idem.Replace || p.Strategy == idem.ReplacePartition || p.Strategy == idem.Merge) {
		label := fmt.Sprintf("table %q", p.Table)
		if p.Partition != nil {
			label = fmt.Sprintf("partition %s of %q", p.Partition, p.Table)
		}
		return nil, idem.BadInput("the input has no rows: %s would empty %s; pass --allow-empty if that is what you want", p.Strategy, label)
	}

	// The folders in scope, read back.
	segs, filter := ts.lay.scope(p.Partition)
	pidx := -1
	if p.Partition != nil {
		pidx = out.Index(p.Partition.Column)
	}
	inScope := func(r idem.Row) bool {
		return !filter || (!r[pidx].Null && r[pidx].S == p.Partition.Value)
	}
	final := map[string][]hrow{}
	dirty := map[string]bool{}
	var oldIn []oldRow
	for _, s := range segs {
		if !keyed {
			break // read folder by folder below
		}
		segVal[s.dir] = s.value
		m := ts.mans[s.dir]
		if m == nil {
			continue
		}
		err := t.readRows(ctx, p.Table, s, m, out, func(r idem.Row) error {
			if inScope(r) {
				oldIn = append(oldIn, oldRow{dir: s.dir, row: r, h: h.Hash(r)})
			} else {
				final[s.dir] = append(final[s.dir], hrow{r, h.Hash(r)})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if grown {
			dirty[s.dir] = true
		}
	}

	var c struct{ ins, upd, del, unch, skip int64 }
	c.skip = skipped
	var outFP idem.Fingerprint
	var pend []*pending
	if !keyed {
		// Folder by folder: a folder whose rows in scope are already
		// exactly the input's rows for it keeps its files, so a load of
		// many partitions rewrites only those that changed. One folder's
		// old and new rows are in memory at a time.
		oldSeg := map[string]segment{}
		dirs := make([]string, 0, len(segs)+len(fpNew))
		for _, s := range segs {
			segVal[s.dir] = s.value
			if ts.mans[s.dir] != nil {
				oldSeg[s.dir] = s
				dirs = append(dirs, s.dir)
			}
		}
		for d := range fpNew {
			if _, ok := oldSeg[d]; !ok {
				dirs = append(dirs, d)
			}
		}
		sort.Strings(dirs)
		for _, d := range dirs {
			var fin, oldD []hrow
			var fpOld idem.Fingerprint
			isDirty := false
			if s, ok := oldSeg[d]; ok {
				err := t.readRows(ctx, p.Table, s, ts.mans[d], out, func(r idem.Row) error {
					hr := hrow{r, h.Hash(r)}
					if inScope(r) {
						oldD = append(oldD, hr)
						fpOld.Add(hr.h)
					} else {
						fin = append(fin, hr)
					}
					return nil
				})
				if err != nil {
					return nil, err
				}
				isDirty = grown
			}
			if fpN := fpNew[d]; len(oldD) > 0 && fpN != nil && fpOld == *fpN {
				c.unch += int64(len(oldD))
				fin = append(fin, oldD...)
			} else {
				news, err := sp.rows(d, len(out))
				if err != nil {
					return nil, err
				}
				// The folder is rewritten whole, but the counts say what
				// changed, as a SQL target's keyless swap does.
				same := sameRows(oldD, news)
				c.del += int64(len(oldD)) - same
				c.ins += int64(len(news)) - same
				c.unch += same
				isDirty = isDirty || len(oldD) > 0 || len(news) > 0
				fin = append(fin, news...)
			}
			oldD = nil
			for _, r := range fin {
				if p.Partition == nil || (!r.row[pidx].Null && r.row[pidx].S == p.Partition.Value) {
					outFP.Add(r.h)
				}
			}
			if !isDirty || p.DryRun {
				continue
			}
			pd, err := t.writeFiles(ctx, p, segment{dir: d, value: segVal[d]}, partCol, out, fin)
			if err != nil {
				return nil, err
			}
			pend = append(pend, pd)
		}
	} else {
		oldMap := make(map[string]int, len(oldIn))
		for j, o := range oldIn {
			oldMap[ky.key(o.row)] = j
		}
		matched := make([]bool, len(oldIn))
		var fresh []hrow
		for _, hr := range rows {
			r := hr.row
			j, ok := oldMap[ky.key(r)]
			if !ok {
				c.ins++
				fresh = append(fresh, hr)
				continue
			}
			matched[j] = true
			o := oldIn[j].row
			same := true
			for _, x := range outIdx {
				if o[x] != r[x] {
					same = false
					break
				}
			}
			switch {
			case same:
				c.unch++
			case p.Strategy == idem.InsertMissing:
				c.skip++
			default:
				c.upd++
				merged := append(idem.Row{}, o...)
				for _, x := range outIdx {
					merged[x] = r[x]
				}
				oldIn[j].row, oldIn[j].changed = merged, true
				if sameHash {
					oldIn[j].h = hr.h // every column came from the input
				} else {
					oldIn[j].h = h.Hash(merged)
				}
			}
		}
		replaceish := p.Strategy == idem.Merge || p.Strategy == idem.Replace || p.Strategy == idem.ReplacePartition
		for j, o := range oldIn {
			if !matched[j] && replaceish {
				c.del++
				dirty[o.dir] = true
				continue
			}
			d := o.dir
			if o.changed {
				d = segOf(o.row)
				dirty[o.dir], dirty[d] = true, true
			}
			final[d] = append(final[d], hrow{o.row, o.h})
		}
		for _, r := range fresh {
			d := segOf(r.row)
			final[d] = append(final[d], r)
			dirty[d] = true
		}
	}
	for _, rs := range final {
		for _, r := range rs {
			if p.Partition == nil || (!r.row[pidx].Null && r.row[pidx].S == p.Partition.Value) {
				outFP.Add(r.h)
			}
		}
	}
	res := &idem.Result{
		Table: p.Table, Partition: p.Partition.String(), Strategy: string(p.Strategy),
		RowsIn: rowsIn, Inserted: c.ins, Updated: c.upd, Deleted: c.del, Unchanged: c.unch, Skipped: c.skip,
		InputFingerprint: in.Fingerprint().Hex(), OutputFingerprint: outFP.Hex(), RunID: p.RunID, DryRun: p.DryRun,
	}
	if p.DryRun {
		return res, nil
	}
	run := &idem.Run{
		RunID: p.RunID, Pipeline: p.Pipeline, Table: p.Table, Partition: res.Partition,
		ExecutionDate: p.ExecutionDate, Strategy: res.Strategy, InputDigest: p.InputDigest,
		InputFingerprint: res.InputFingerprint, OutputFingerprint: res.OutputFingerprint, OutputRows: outFP.Rows,
		RowsIn: res.RowsIn, Inserted: res.Inserted, Updated: res.Updated, Deleted: res.Deleted,
		Unchanged: res.Unchanged, Skipped: res.Skipped, Status: "ok",
		StartedAt: idem.FormatTimestamp(p.Started()), FinishedAt: idem.FormatTimestamp(p.Now()),
	}

	// 1. New files of every changed folder (a keyless load wrote them
	// above, folder by folder).
	dirs := make([]string, 0, len(dirty))
	for d := range dirty {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		rs := final[d]
		if keyed {
			keys := make([]string, len(rs))
			for i, r := range rs {
				keys[i] = ky.key(r.row)
			}
			sort.Sort(byKey{keys, rs})
		}
		pd, err := t.writeFiles(ctx, p, segment{dir: d, value: segVal[d]}, partCol, out, rs)
		if err != nil {
			return nil, err
		}
		pend = append(pend, pd)
	}
	for _, pd := range pend {
		pd.man.Run = &runRecord{Run: *run}
	}
	for _, l := range locks {
		if err := l.Lost(); err != nil {
			return nil, err
		}
	}
	// 2. The commit points.
	for _, pd := range pend {
		b, err := json.MarshalIndent(pd.man, "", "  ")
		if err != nil {
			return nil, err
		}
		if _, err := t.st.Put(ctx, tableDir(p.Table)+pd.dir+manifestName, append(b, '\n')); err != nil {
			return nil, fmt.Errorf("commit %s: %w", pd.dir, err)
		}
	}
	// 3. The ledger, with the state token of what is now committed as it
	// will be once step 4 is done. The folders in scope are listed after
	// the commit, so every file their manifests do not list is found: the
	// previous version's, and leftovers of crashed loads, also in folders
	// this load did not change.
	pieces, err := t.statePieces(ctx, p.Table, p.Partition)
	if err != nil {
		return nil, fmt.Errorf("state token: %w", err)
	}
	run.StateToken = tokenOf(pieces, true)
	if err := t.putRun(ctx, run); err != nil {
		return nil, fmt.Errorf("record run: %w", err)
	}
	// 4. Files no manifest lists. A crash or failure here leaves unlisted
	// files, which make the state token differ from the recorded one: the
	// next load of the folder, even with the same input, takes the full
	// path and removes them.
	for _, pc := range pieces {
		for _, name := range staleFiles(pc.m, pc.objs) {
			_ = t.st.Delete(ctx, tableDir(p.Table)+pc.seg.dir+name)
		}
	}
	return res, nil
}

type byKey struct {
	keys []string
	rows []hrow
}

func (b byKey) Len() int           { return len(b.keys) }
func (b byKey) Less(i, j int) bool { return b.keys[i] < b.keys[j] }
func (b byKey) Swap(i, j int) {
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
	b.rows[i], b.rows[j] = b.rows[j], b.rows[i]
}

// pending is a folder whose files are written and whose manifest is not.
type pending struct {
	dir string
	man *manifest
}

// writeFiles stores a folder's new content under content-addressed names,
// skipping files already present with the same name and size (the name
// carries the content hash), and returns its manifest-to-be.
func (t *Target) writeFiles(ctx context.Context, p *idem.Plan, s segment, partCol string, schema idem.Schema, hrows []hrow) (*pending, error) {
	prefix := tableDir(p.Table) + s.dir
	objs, _, err := t.st.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	existing := make(map[string]Object, len(objs))
	for _, o := range objs {
		existing[o.Name] = o
	}
	skip := ""
	m := &manifest{Version: 1, Table: p.Table, Key: p.Key, Format: t.codec.format, Compression: t.codec.compression, Files: []fileJSON{}}
	if s.dir != "" {
		skip = partCol
		pj := &partJSON{Column: partCol}
		if !s.value.Null {
			v := s.value.S
			pj.Value = &v
		}
		m.Partition = pj
	}
	for _, c := range schema {
		m.Columns = append(m.Columns, columnJSON{Name: c.Name, Type: c.Type.String()})
	}
	var segFP idem.Fingerprint
	per := t.rowsPerFile
	rows := make([]idem.Row, len(hrows))
	for i, r := range hrows {
		rows[i] = r.row
	}
	for i := 0; i*per < len(rows); i++ {
		chunk := rows[i*per : min(len(rows), (i+1)*per)]
		var fileFP idem.Fingerprint
		for _, r := range hrows[i*per : min(len(rows), (i+1)*per)] {
			fileFP.Add(r.h)
			segFP.Add(r.h)
		}
		enc, err := t.codec.encode(schema, skip, chunk)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", prefix, err)
		}
		name := fmt.Sprintf("%s%05d-%s%s", dataPrefix, i, enc.sha[:16], t.codec.ext())
		if o, ok := existing[name]; !ok || o.Size != int64(len(enc.data)) {
			if _, err := t.st.Put(ctx, prefix+name, enc.data); err != nil {
				return nil, err
			}
		}
		m.Files = append(m.Files, fileJSON{Name: name, Rows: int64(len(chunk)), Bytes: int64(len(enc.data)), SHA256: enc.sha, Fingerprint: fileFP.Hex()})
	}
	m.Rows, m.Fingerprint = segFP.Rows, segFP.Hex()
	return &pending{dir: s.dir, man: m}, nil
}
