package idem

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Diff is what differs between two snapshots of a table or partition.
type Diff struct {
	Identical  bool  `json:"identical"`
	RowsBefore int64 `json:"rows_before"`
	RowsAfter  int64 `json:"rows_after"`
	Added      int64 `json:"added"`
	Removed    int64 `json:"removed"`
	// Changed counts keys present in both states with other values (only
	// with a key; without one a changed row is one removed and one added).
	Changed        int64    `json:"changed"`
	ColumnsAdded   []string `json:"columns_added,omitempty"`
	ColumnsRemoved []string `json:"columns_removed,omitempty"`
	// Samples: keys with --key, else the rows themselves, at most
	// DiffSamples of each kind, in a deterministic order.
	SampleAdded   []string     `json:"sample_added,omitempty"`
	SampleRemoved []string     `json:"sample_removed,omitempty"`
	SampleChanged []ChangedRow `json:"sample_changed,omitempty"`
	// Segments compared and how many differed: the work the diff did.
	Segments          int `json:"segments"`
	SegmentsDiffering int `json:"segments_differing"`
}

// ChangedRow is one key whose values differ.
type ChangedRow struct {
	Key     string         `json:"key"`
	Columns []ColumnChange `json:"columns"`
}

// ColumnChange is one column of a changed row; nil means NULL (or a column
// absent on that side).
type ColumnChange struct {
	Column string  `json:"column"`
	Before *string `json:"before"`
	After  *string `json:"after"`
}

// DiffSamples is how many sample keys a diff keeps per kind.
const DiffSamples = 10

// Compare diffs two snapshots of the same scope: the segments whose
// fingerprints differ are read back from both spools, one group file at a
// time, and matched by key (or by row hash without one).
func Compare(a, b *Snapshot) (*Diff, error) {
	d := &Diff{RowsBefore: a.FP.Rows, RowsAfter: b.FP.Rows, Segments: snapSegments}
	d.ColumnsAdded, d.ColumnsRemoved = columnDelta(a, b)
	if a.FP == b.FP && len(d.ColumnsAdded) == 0 && len(d.ColumnsRemoved) == 0 {
		d.Identical = true
		return d, nil
	}
	var byGroup [snapGroups]map[int]bool
	for i := range snapSegments {
		if a.Segments[i] != b.Segments[i] {
			d.SegmentsDiffering++
			g := i % snapGroups
			if byGroup[g] == nil {
				byGroup[g] = map[int]bool{}
			}
			byGroup[g][i] = true
		}
	}
	if !a.spooled || !b.spooled {
		return d, nil
	}
	keyed := len(a.key) > 0 && len(a.key) == len(b.key)
	for g, want := range byGroup {
		if want == nil {
			continue
		}
		rowsA, err := groupRows(a, g, want, keyed)
		if err != nil {
			return nil, err
		}
		rowsB, err := groupRows(b, g, want, keyed)
		if err != nil {
			return nil, err
		}
		segs := make([]int, 0, len(want))
		for s := range want {
			segs = append(segs, s)
		}
		sort.Ints(segs)
		for _, seg := range segs {
			d.compareSegment(a, b, rowsA[seg], rowsB[seg], keyed)
		}
	}
	return d, nil
}

// segRows maps a match key (the encoded key, or the row hash) to the rows
// carrying it, per segment.
type segRows map[string][]spooledRow

func groupRows(s *Snapshot, g int, want map[int]bool, keyed bool) (map[int]segRows, error) {
	out := map[int]segRows{}
	err := s.readGroup(g, want, func(seg int, sr spooledRow) error {
		m := out[seg]
		if m == nil {
			m = segRows{}
			out[seg] = m
		}
		var k string
		if keyed {
			k = string(appendKey(nil, sr.row, s.key))
		} else {
			k = fmt.Sprintf("%016x%016x", sr.hash.Hi, sr.hash.Lo)
		}
		m[k] = append(m[k], sr)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read snapshot of %q: %w", s.Table, err)
	}
	return out, nil
}

func (d *Diff) compareSegment(a, b *Snapshot, ra, rb segRows, keyed bool) {
	keys := make([]string, 0, len(ra)+len(rb))
	for k := range ra {
		keys = append(keys, k)
	}
	for k := range rb {
		if _, ok := ra[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		onlyA, onlyB := multisetMinus(ra[k], rb[k])
		pairs := 0
		if keyed {
			pairs = min(len(onlyA), len(onlyB))
		}
		for i := range pairs {
			d.Changed++
			if len(d.SampleChanged) < DiffSamples {
				d.SampleChanged = append(d.SampleChanged, ChangedRow{
					Key: renderKey(a, onlyA[i].row), Columns: changedColumns(a, b, onlyA[i].row, onlyB[i].row)})
			}
		}
		for _, r := range onlyA[pairs:] {
			d.Removed++
			if len(d.SampleRemoved) < DiffSamples {
				d.SampleRemoved = append(d.SampleRemoved, sample(a, r.row, keyed))
			}
		}
		for _, r := range onlyB[pairs:] {
			d.Added++
			if len(d.SampleAdded) < DiffSamples {
				d.SampleAdded = append(d.SampleAdded, sample(b, r.row, keyed))
			}
		}
	}
}

// multisetMinus returns the rows of a not matched by an equal row of b, and
// the reverse, keeping their order.
func multisetMinus(a, b []spooledRow) (onlyA, onlyB []spooledRow) {
	return minus(a, b), minus(b, a)
}

// minus is the multiset difference a - b by row hash.
func minus(a, b []spooledRow) []spooledRow {
	left := make(map[RowHash]int, len(b))
	for _, r := range b {
		left[r.hash]++
	}
	var out []spooledRow
	for _, r := range a {
		if left[r.hash] > 0 {
			left[r.hash]--
			continue
		}
		out = append(out, r)
	}
	return out
}

// compared lists the compared column names of a snapshot with their
// positions.
func (s *Snapshot) compared() map[string]int {
	m := make(map[string]int, len(s.cols))
	for _, i := range s.cols {
		m[s.Schema[i].Name] = i
	}
	return m
}

func columnDelta(a, b *Snapshot) (added, removed []string) {
	ca, cb := a.compared(), b.compared()
	for n, i := range cb {
		if j, ok := ca[n]; !ok || a.Schema[j].Type != b.Schema[i].Type {
			added = append(added, n)
		}
	}
	for n, i := range ca {
		if j, ok := cb[n]; !ok || b.Schema[j].Type != a.Schema[i].Type {
			removed = append(removed, n)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}

func changedColumns(a, b *Snapshot, ra, rb Row) []ColumnChange {
	ca, cb := a.compared(), b.compared()
	names := make([]string, 0, len(ca))
	for n := range ca {
		names = append(names, n)
	}
	for n := range cb {
		if _, ok := ca[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []ColumnChange
	for _, n := range names {
		var va, vb *string
		i, okA := ca[n]
		j, okB := cb[n]
		if okA && !ra[i].Null {
			s := ra[i].S
			va = &s
		}
		if okB && !rb[j].Null {
			s := rb[j].S
			vb = &s
		}
		if okA && okB && ra[i] == rb[j] && a.Schema[i].Type == b.Schema[j].Type {
			continue
		}
		out = append(out, ColumnChange{Column: n, Before: va, After: vb})
	}
	return out
}

// renderKey shows a key as col=value[,col=value].
func renderKey(s *Snapshot, r Row) string {
	parts := make([]string, len(s.key))
	for n, i := range s.key {
		parts[n] = s.Schema[i].Name + "=" + renderValue(r[i])
	}
	return strings.Join(parts, ",")
}

// sample is a key, or without one the compared columns of the row.
func sample(s *Snapshot, r Row, keyed bool) string {
	if keyed {
		return renderKey(s, r)
	}
	parts := make([]string, len(s.cols))
	for n, i := range s.cols {
		parts[n] = s.Schema[i].Name + "=" + renderValue(r[i])
	}
	out := "(" + strings.Join(parts, ", ") + ")"
	if len(out) > 300 {
		out = out[:297] + "..."
	}
	return out
}

func renderValue(v Value) string {
	if v.Null {
		return "NULL"
	}
	if v.S == "" || strings.ContainsAny(v.S, ",=() \t\r\n\"") || v.S == "NULL" {
		return strconv.Quote(v.S)
	}
	return v.S
}

// Text renders a diff for people.
func (d *Diff) Text() string {
	if d.Identical {
		return "identical"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rows %d -> %d: %d added, %d removed, %d changed (%d of %d segments differ)\n",
		d.RowsBefore, d.RowsAfter, d.Added, d.Removed, d.Changed, d.SegmentsDiffering, d.Segments)
	if len(d.ColumnsAdded) > 0 {
		fmt.Fprintf(&b, "  columns added or retyped: %s\n", strings.Join(d.ColumnsAdded, ", "))
	}
	if len(d.ColumnsRemoved) > 0 {
		fmt.Fprintf(&b, "  columns removed or retyped: %s\n", strings.Join(d.ColumnsRemoved, ", "))
	}
	for _, k := range d.SampleAdded {
		fmt.Fprintf(&b, "  + %s\n", k)
	}
	for _, k := range d.SampleRemoved {
		fmt.Fprintf(&b, "  - %s\n", k)
	}
	for _, c := range d.SampleChanged {
		cols := make([]string, len(c.Columns))
		for i, cc := range c.Columns {
			cols[i] = fmt.Sprintf("%s: %s -> %s", cc.Column, showPtr(cc.Before), showPtr(cc.After))
		}
		fmt.Fprintf(&b, "  ~ %s  %s\n", c.Key, strings.Join(cols, "; "))
	}
	return strings.TrimRight(b.String(), "\n")
}

func showPtr(p *string) string {
	if p == nil {
		return "NULL"
	}
	return renderValue(V(*p))
}
