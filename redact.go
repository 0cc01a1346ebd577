package idem

import (
	"net/url"
	"strings"
)

// RedactURL hides the password of a URL for messages and logs, also in a
// URL too malformed to parse. Every place that prints a target or source
// URL goes through it.
func RedactURL(raw string) string {
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
