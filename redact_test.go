package idem

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, u := range []string{"postgres://u:s3cret@h:5432/db", "postgres://u:s3cret@[::1", "mysql://root:s3cret@tcp(x)/db"} {
		got := RedactURL(u)
		if strings.Contains(got, "s3cret") || !strings.Contains(got, "***") {
			t.Errorf("RedactURL(%q) = %q", u, got)
		}
	}
	if got := RedactURL("sqlite:idem.db"); got != "sqlite:idem.db" {
		t.Errorf("a URL without password changed: %q", got)
	}
}
