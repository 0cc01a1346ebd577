package idem

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, u := range []string{
		"postgres://u:s3cret@h:5432/db", "postgres://u:s3cret@[::1", "mysql://root:s3cret@tcp(x)/db",
		// pgx takes the password from the query too.
		"postgres://u@h/db?password=s3cret", "postgres://u@h/db?sslmode=disable&PASSWORD=s3cret&x=1",
		"postgres://u@h/db?pass=s3cret", "postgres://u:s3cret@h/db?password=s3cret",
		"postgres://u@h:bad/db?password=s3cret",
		// A password holding "/" and "@" does not parse; the user info
		// ends at the last "@".
		"postgres://root:ab/c@d3f@h/db", "postgres://root:s3c/ret@h/db?password=s3cret",
	} {
		got := RedactURL(u)
		if strings.Contains(got, "s3cret") || strings.Contains(got, "ab/c") || strings.Contains(got, "d3f") || !strings.Contains(got, "***") {
			t.Errorf("RedactURL(%q) = %q", u, got)
		}
	}
	for _, u := range []string{"sqlite:idem.db", "postgres://u@h/db?sslmode=disable", "postgres://u@h/db?passive=1"} {
		if got := RedactURL(u); got != u {
			t.Errorf("a URL without password changed: %q became %q", u, got)
		}
	}
	if got := RedactURL("postgres://u:s3cret@h/db?sslmode=disable&password=x"); got != "postgres://u:***@h/db?sslmode=disable&password=***" {
		t.Errorf("the rest of the URL changed: %q", got)
	}
}
