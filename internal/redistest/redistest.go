// Package redistest gives each test its own key prefix on the shared Redis
// server, so tests running in parallel never see each other's keys.
package redistest

import (
	"net/url"
	"testing"

	"github.com/idemhq/idem"
)

// PrefixedURL returns base (a redis:// URL) with a fresh ?prefix=.
func PrefixedURL(t testing.TB, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("prefix", "idemtest:"+idem.NewToken()[:12]+":")
	u.RawQuery = q.Encode()
	return u.String()
}
