package conformance

import (
	"os"
	"testing"
)

// ServerURL returns the URL in the environment variable name, or skips the
// test loudly. Under CI (CI=true) a missing variable fails instead: CI must
// exercise every backend, and a silent skip would hide that it did not.
func ServerURL(t *testing.T, name string) string {
	t.Helper()
	u := os.Getenv(name)
	if u != "" {
		return u
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not set, but CI must test this backend (.ci/run sets it)", name)
	}
	t.Skipf("SKIPPED: %s is not set; set it to run these tests against a real server", name)
	return ""
}
