package idem

import (
	"context"
	"errors"
	"fmt"
)

// What a ledger run's output is to the data now (idem runs, CONTENT).
const (
	// ContentCurrent: the table or partition still holds exactly what the
	// run wrote.
	ContentCurrent = "current"
	// ContentDrifted: the newest run of its scope, yet the content differs
	// from what it wrote: something outside idem changed the data.
	ContentDrifted = "drifted"
	// ContentSuperseded: a later idem run of the same table wrote
	// something else since; not a sign of tampering.
	ContentSuperseded = "superseded"
	// ContentGone: the table no longer exists.
	ContentGone = "gone"
	// ContentUnknown: the run recorded no output fingerprint.
	ContentUnknown = "unknown"
)

// Drift tells, for each run (newest first, as Runs returns them), whether
// its recorded output fingerprint still matches the data. Each scope is
// fingerprinted at most once, and not at all when its state token still
// equals the one its newest run recorded. runs may be a filtered list
// (one partition, a limit): before calling a run drifted, Drift reads its
// table's whole ledger for newer runs the list left out.
func Drift(ctx context.Context, t Target, runs []Run) ([]string, error) {
	type scope struct{ table, part string }
	current := map[scope]string{} // scope -> fingerprint hex, or ContentGone
	newest := map[scope]int{}     // scope -> index of its newest run
	ledgers := map[string][]Run{} // table -> its whole ledger, read on demand
	supersededOutside := func(r Run) (bool, error) {
		all, ok := ledgers[r.Table]
		if !ok {
			var err error
			if all, err = t.Runs(ctx, RunFilter{Table: r.Table}); err != nil {
				return false, fmt.Errorf("ledger of %q: %w", r.Table, err)
			}
			ledgers[r.Table] = all
		}
		for i, n := range all {
			if n.RunID == r.RunID {
				return overwrittenLater(all[:i], r), nil
			}
		}
		return false, nil
	}
	out := make([]string, len(runs))
	for i, r := range runs {
		sc := scope{r.Table, r.Partition}
		if _, seen := newest[sc]; !seen {
			newest[sc] = i
		}
		if r.OutputFingerprint == "" {
			out[i] = ContentUnknown
			continue
		}
		fp, ok := current[sc]
		if !ok {
			var err error
			if fp, err = scopeContent(ctx, t, r); err != nil {
				return nil, err
			}
			current[sc] = fp
		}
		switch {
		case fp == ContentGone:
			out[i] = ContentGone
		case fp == r.OutputFingerprint:
			out[i] = ContentCurrent
		case newest[sc] == i && !overwrittenLater(runs[:i], r):
			later, err := supersededOutside(r)
			if err != nil {
				return nil, err
			}
			out[i] = ContentDrifted
			if later {
				out[i] = ContentSuperseded
			}
		default:
			out[i] = ContentSuperseded
		}
	}
	return out, nil
}

// overwrittenLater reports whether a newer run (those before r in the
// list) wrote rows of r's scope from another scope: a whole-table load
// after a partition load, or the reverse, or a newer run of r's own scope.
// Partitions of one column with different values do not overlap;
// partitions of different columns may.
func overwrittenLater(newer []Run, r Run) bool {
	mine, _ := ParsePartition(r.Partition)
	for _, n := range newer {
		if n.Table != r.Table {
			continue
		}
		theirs, _ := ParsePartition(n.Partition)
		if n.Partition == r.Partition || mine == nil || theirs == nil || r.Partition == "" || n.Partition == "" || mine.Column != theirs.Column {
			return true
		}
	}
	return false
}

func scopeContent(ctx context.Context, t Target, r Run) (string, error) {
	var part *Partition
	if r.Partition != "" {
		p, err := ParsePartition(r.Partition)
		if err != nil {
			return "", err
		}
		part = p
	}
	if r.StateToken != "" {
		tok, err := t.StateToken(ctx, r.Table, part)
		if errors.Is(err, ErrNoTable) {
			return ContentGone, nil
		}
		if err != nil {
			return "", err
		}
		if tok == r.StateToken {
			return r.OutputFingerprint, nil
		}
	}
	fp, err := FingerprintOf(ctx, t, r.Table, part)
	if errors.Is(err, ErrNoTable) {
		return ContentGone, nil
	}
	if err != nil {
		return "", err
	}
	return fp.Hex(), nil
}
