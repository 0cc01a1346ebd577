package sqlplan

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Versioned is implemented by backends whose state token summarises a
// per-row version that every write stamps with the writing transaction's
// id (PostgreSQL's xmin): the scope's row count, the sum of the versions
// and the largest one, as a VersionToken. A load that applied a delta
// itself knows how each of those moved, so ApplyLoad carries the token
// forward from the versions of the few rows it touched instead of reading
// the whole scope again (a 1M-row scan costs more than a 1% delta).
type Versioned interface {
	// VersionExpr is the version of row alias as a bigint expression.
	VersionExpr(alias string) string
	// TxVersion is the version this transaction's writes stamp; it is
	// only asked for after the transaction has written.
	TxVersion(ctx context.Context) (int64, error)
	// StampVersion is the version the writes of the savepoint now open
	// stamp (its own id, not the transaction's), found by writing nothing
	// that stays: the delta runs in a savepoint so that a refused row can
	// be located (refused.go). stage is the staging table, free to touch.
	StampVersion(ctx context.Context, stage string) (int64, error)
}

// txVersioner is what carryToken needs of a Versioned: the version the
// writes it carries over stamped.
type txVersioner interface {
	TxVersion(ctx context.Context) (int64, error)
}

// stampedVersion is a Versioned whose writes stamp a version known in
// advance (StampVersion's).
type stampedVersion struct {
	Versioned
	v int64
}

func (s stampedVersion) TxVersion(context.Context) (int64, error) { return s.v, nil }

// VersionToken is the state token of a Versioned backend. The text form,
// "x1:N:SUM:MAX", is what the ledger and the row digest store.
type VersionToken struct{ N, Sum, Max int64 }

func (t VersionToken) String() string { return fmt.Sprintf("x1:%d:%d:%d", t.N, t.Sum, t.Max) }

// ParseVersionToken reads the text form; ok is false for any other token
// (an older format, or one that overflows: then the scope is just read).
func ParseVersionToken(s string) (t VersionToken, ok bool) {
	f := strings.Split(s, ":")
	if len(f) != 4 || f[0] != "x1" {
		return t, false
	}
	var v [3]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil || n < 0 {
			return t, false
		}
		v[i] = n
	}
	return VersionToken{N: v[0], Sum: v[1], Max: v[2]}, true
}

// versionAgg is count, sum and max of the versions of some rows.
type versionAgg struct{ n, sum, max int64 }

func (a *versionAgg) add(b versionAgg) {
	a.n += b.n
	a.sum += b.sum
	a.max = max(a.max, b.max)
}

// touchedVersions sums the versions of the target rows a delta is about to
// update or delete: those whose key is staged, and the gone keys.
func (p *Planner) touchedVersions(ctx context.Context, v Versioned, stage string, gone [][]byte) (versionAgg, error) {
	ver := v.VersionExpr("t")
	agg := fmt.Sprintf("count(*), coalesce(sum(%s), 0)::bigint, coalesce(max(%s), 0)::bigint", ver, ver)
	var total versionAgg
	read := func(vals []any) error {
		total.add(versionAgg{toInt(vals[0]), toInt(vals[1]), toInt(vals[2])})
		return nil
	}
	q := fmt.Sprintf("SELECT %s FROM %s AS t JOIN %s AS s ON %s", agg, p.table(), stage, p.keyMatch("t", "s"))
	if err := p.X.Query(ctx, q, nil, read); err != nil {
		return total, err
	}
	err := p.keyBatches(gone, "t.", func(in string, args []any) error {
		return p.X.Query(ctx, fmt.Sprintf("SELECT %s FROM %s AS t WHERE %s", agg, p.table(), in), args, read)
	})
	return total, err
}

// carryToken is the scope's token after a delta: old is the token before
// it, touched the versions of the rows it updated or deleted, c what it
// did. ok is false when the token cannot be known without a scan: the
// statements did other than the digest predicted (then some row was not
// where it was expected), or rows holding the old maximum version went
// and nothing newer replaced them.
func carryToken(ctx context.Context, v txVersioner, old VersionToken, touched versionAgg, c Counts, wantUpdated, wantInserted, wantDeleted int64) (string, bool, error) {
	if c.Updated != wantUpdated || c.Inserted != wantInserted || c.Deleted != wantDeleted || touched.n != c.Updated+c.Deleted {
		return "", false, nil
	}
	next := VersionToken{N: old.N - c.Deleted + c.Inserted, Sum: old.Sum - touched.sum, Max: old.Max}
	wrote := c.Updated + c.Inserted
	if wrote > 0 {
		xid, err := v.TxVersion(ctx)
		if err != nil {
			return "", false, err
		}
		next.Sum += wrote * xid
		if xid >= old.Max {
			next.Max = xid
		} else if touched.max >= old.Max {
			return "", false, nil
		}
	} else if touched.n > 0 && touched.max >= old.Max {
		return "", false, nil
	}
	if next.N == 0 {
		next = VersionToken{}
	}
	if next.N < 0 || next.Sum < 0 {
		return "", false, nil
	}
	return next.String(), true, nil
}
