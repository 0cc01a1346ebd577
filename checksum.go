package idem

import (
	"context"
	"errors"
)

// FingerprintOf computes the canonical fingerprint of a table or partition
// by reading it back through Scan. It does not check its arguments; Checksum
// does.
func FingerprintOf(ctx context.Context, t Target, table string, part *Partition, exclude ...string) (Fingerprint, error) {
	var fp Fingerprint
	var h *RowHasher
	err := t.Scan(ctx, table, part, func(s Schema, r Row) error {
		if h == nil {
			h = NewRowHasher(s, exclude...)
		}
		fp.Add(h.Hash(r))
		return nil
	})
	return fp, err
}

// Checksum is FingerprintOf for a user's request: an unknown table, column
// or partition is bad input naming it, not an empty fingerprint that would
// let a typo pass as "identical".
func Checksum(ctx context.Context, t Target, table string, part *Partition, exclude ...string) (Fingerprint, error) {
	if _, err := CheckScope(ctx, t, table, part, exclude); err != nil {
		return Fingerprint{}, err
	}
	fp, err := FingerprintOf(ctx, t, table, part, exclude...)
	if err != nil {
		return fp, err
	}
	if part != nil && fp.Rows == 0 {
		return fp, BadInput("partition %s of table %q has no rows", part, table)
	}
	return fp, nil
}

// CheckScope returns the table's columns after checking that the table
// exists and has every column named by part and by cols.
func CheckScope(ctx context.Context, t Target, table string, part *Partition, cols []string) (Schema, error) {
	if table == "" {
		return nil, BadInput("--table is required")
	}
	schema, err := t.Describe(ctx, table)
	if errors.Is(err, ErrNoTable) {
		return nil, BadInput("table %q does not exist", table)
	}
	if err != nil {
		return nil, err
	}
	if part != nil && schema.Index(part.Column) < 0 {
		return nil, BadInput("table %q has no column %q (from --partition %s)", table, part.Column, part)
	}
	for _, c := range cols {
		if schema.Index(c) < 0 {
			return nil, BadInput("table %q has no column %q", table, c)
		}
	}
	return schema, nil
}
