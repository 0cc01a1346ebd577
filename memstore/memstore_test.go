package memstore_test

import (
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/memstore"
)

func TestKeyStore(t *testing.T) {
	conformance.RunKeyStore(t, conformance.KeyStoreBackend{
		Name: "memory",
		Open: func(t *testing.T) idem.KeyStore { return memstore.New() },
		OpenCuttable: func(t *testing.T) (idem.KeyStore, func()) {
			s := memstore.New()
			return s, func() { s.SetDown(true) }
		},
	})
}
