package blob

import (
	"context"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
)

const (
	noQuery    = "files and object stores run no SQL"
	noTableKey = "files keep no primary key between loads: --key applies within a load"
)

func TestConformanceFile(t *testing.T) {
	conformance.Run(t, conformance.Backend{
		Name:       "file",
		NewURL:     func(t *testing.T) string { return "file:" + t.TempDir() },
		Open:       func(ctx context.Context, url string) (idem.Target, error) { return Open(ctx, url) },
		NoQuery:    noQuery,
		NoTableKey: noTableKey,
	})
}
