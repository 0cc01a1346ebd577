package idem

import (
	"net/url"
	"strings"
)

// RedactURL hides the password of a URL for messages and logs, also in a
// URL too malformed to parse. Every place that prints a target or source
// URL goes through it.
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		q, changed := redactQuery(u.RawQuery)
		u.RawQuery = q
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "***")
				changed = true
			}
		}
		if !changed {
			return raw
		}
		return strings.Replace(u.String(), "%2A%2A%2A", "***", 1)
	}
	out := raw
	// The last "@": an unescaped password may hold "@" (and "/", which
	// is why the URL did not parse); over-masking beats printing a piece.
	if i := strings.LastIndex(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "://"); j >= 0 && j < i {
			if k := strings.Index(raw[j+3:i], ":"); k >= 0 {
				out = raw[:j+3+k+1] + "***" + raw[i:]
			}
		}
	}
	if i := strings.IndexByte(out, '?'); i >= 0 {
		if q, changed := redactQuery(out[i+1:]); changed {
			out = out[:i+1] + q
		}
	}
	return out
}

// redactQuery masks the values of password parameters: PostgreSQL drivers
// (pgx, libpq) take the password from the query as well as the user info.
func redactQuery(q string) (string, bool) {
	if q == "" {
		return q, false
	}
	parts := strings.Split(q, "&")
	changed := false
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		name := k
		if uk, err := url.QueryUnescape(k); err == nil {
			name = uk
		}
		switch strings.ToLower(name) {
		case "password", "pass":
			parts[i] = k + "=***"
			changed = true
		}
	}
	return strings.Join(parts, "&"), changed
}
