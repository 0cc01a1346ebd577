package main

import (
	"context"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/blob"
	"github.com/idemhq/idem/postgres"
	"github.com/idemhq/idem/sqlite"
)

// queryable targets can also be a --from source.
type queryable interface {
	Query(ctx context.Context, sql string) (idem.RecordReader, error)
}

// openTarget opens a target by URL (SPEC.md § Targets and sources).
func openTarget(ctx context.Context, raw string) (idem.Target, error) {
	switch {
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(raw, "sqlite:")
		path = strings.TrimPrefix(path, "//")
		if path == "" {
			return nil, idem.BadInput("%q: sqlite URL needs a path, e.g. sqlite:idem.db", raw)
		}
		return sqlite.Open(ctx, path)
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		if _, err := url.Parse(raw); err != nil {
			return nil, idem.BadInput("malformed URL %s", idem.RedactURL(raw))
		}
		return postgres.Open(ctx, raw)
	case strings.HasPrefix(raw, "file:"), strings.HasPrefix(raw, "s3://"):
		return blob.Open(ctx, raw)
	}
	scheme, _, ok := strings.Cut(raw, ":")
	if !ok {
		return nil, idem.BadInput("%q is not a target URL (want sqlite:PATH, postgres://…, file:DIR or s3://bucket/prefix)", idem.RedactURL(raw))
	}
	return nil, idem.BadInput("unsupported URL scheme %q in %s (want sqlite:, postgres://, file: or s3://)", scheme, idem.RedactURL(raw))
}

// openExisting opens a target for a command that only reads (checksum,
// diff, runs): opening a SQLite file or a file: directory creates it, and
// a typo in --to would leave an empty database or folder behind.
func openExisting(ctx context.Context, raw string) (idem.Target, error) {
	path, what := "", ""
	switch {
	case strings.HasPrefix(raw, "sqlite:"):
		path, _, _ = strings.Cut(strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//"), "?")
		what = "database file"
	case strings.HasPrefix(raw, "file:"):
		path, _, _ = strings.Cut(strings.TrimPrefix(strings.TrimPrefix(raw, "file:"), "//"), "?")
		what = "directory"
	}
	if path != "" {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, idem.BadInput("%s: no such %s (only a load creates one)", idem.RedactURL(raw), what)
		}
	}
	return openTarget(ctx, raw)
}
