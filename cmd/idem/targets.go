package main

import (
	"context"
	"net/url"
	"strings"

	"github.com/idemhq/idem"
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
			return nil, idem.BadInput("malformed URL %s", redact(raw))
		}
		return postgres.Open(ctx, raw)
	}
	scheme, _, ok := strings.Cut(raw, ":")
	if !ok {
		return nil, idem.BadInput("%q is not a target URL (want sqlite:PATH or postgres://…)", redact(raw))
	}
	return nil, idem.BadInput("unsupported URL scheme %q in %s (want sqlite: or postgres://)", scheme, redact(raw))
}

// redact hides a password in any URL-looking string.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if i := strings.Index(raw, "@"); i >= 0 {
			if j := strings.Index(raw, "://"); j >= 0 && j < i {
				if k := strings.Index(raw[j+3:i], ":"); k >= 0 {
					return raw[:j+3+k+1] + "***" + raw[i:]
				}
			}
		}
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "***")
		return strings.Replace(u.String(), "%2A%2A%2A", "***", 1)
	}
	return raw
}
