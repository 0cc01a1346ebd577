package httpidem_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/internal/redistest"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/postgres"
	"github.com/idemhq/idem/redis"
	"github.com/idemhq/idem/sqlite"
)

// storeKind opens a store for one test, and a store plus a function that
// takes its server down for real.
type storeKind struct {
	name     string
	open     func(t testing.TB) idem.KeyStore
	openDown func(t testing.TB) (idem.KeyStore, func())
}

// must turns (value, error) into value, failing the test on an error.
func must[T any](v T, err error) func(t testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func storeKinds() []storeKind {
	ctx := context.Background()
	return []storeKind{
		{name: "memory",
			open: func(t testing.TB) idem.KeyStore { return memstore.New() },
			openDown: func(t testing.TB) (idem.KeyStore, func()) {
				s := memstore.New()
				return s, func() { s.SetDown(true) }
			}},
		{name: "sqlite",
			open: func(t testing.TB) idem.KeyStore {
				s := must(sqlite.OpenKeyStore(ctx, filepath.Join(t.TempDir(), "k.db")))(t)
				t.Cleanup(func() { s.Close() })
				return s
			},
			openDown: func(t testing.TB) (idem.KeyStore, func()) {
				s := must(sqlite.OpenKeyStore(ctx, filepath.Join(t.TempDir(), "k.db")))(t)
				return s, func() { s.Close() }
			}},
		{name: "postgres",
			open: func(t testing.TB) idem.KeyStore {
				s := must(postgres.OpenKeyStore(ctx, serverURL(t, "IDEM_TEST_POSTGRES")))(t)
				t.Cleanup(func() { s.Close() })
				return s
			},
			openDown: func(t testing.TB) (idem.KeyStore, func()) {
				u := must(url.Parse(serverURL(t, "IDEM_TEST_POSTGRES")))(t)
				addr, cut := conformance.TCPProxy(t, u.Host)
				u.Host = addr
				s := must(postgres.OpenKeyStore(ctx, u.String()))(t)
				t.Cleanup(func() { s.Close() })
				return s, cut
			}},
		{name: "redis",
			open: func(t testing.TB) idem.KeyStore {
				s := must(redis.Open(ctx, redistest.PrefixedURL(t, serverURL(t, "IDEM_TEST_REDIS"))))(t)
				t.Cleanup(func() { s.Close() })
				return s
			},
			// A Redis server of our own on a free port, killed mid-test:
			// the shared one on 6379 is never stopped.
			openDown: func(t testing.TB) (idem.KeyStore, func()) {
				serverURL(t, "IDEM_TEST_REDIS")
				port := freePort(t)
				cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
					"--save", "", "--appendonly", "no", "--dir", t.TempDir())
				if err := cmd.Start(); err != nil {
					t.Fatalf("start redis-server: %v", err)
				}
				t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
				var s idem.KeyStore
				var err error
				for i := 0; i < 100; i++ {
					if s, err = redis.Open(ctx, fmt.Sprintf("redis://127.0.0.1:%d/0", port)); err == nil {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if err != nil {
					t.Fatalf("own redis-server did not come up: %v", err)
				}
				t.Cleanup(func() { s.Close() })
				return s, func() { cmd.Process.Kill(); cmd.Wait() }
			}},
	}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// serverURL is conformance.ServerURL for tests; benchmarks skip quietly
// when the variable is unset (they are run by hand).
func serverURL(tb testing.TB, name string) string {
	if t, ok := tb.(*testing.T); ok {
		return conformance.ServerURL(t, name)
	}
	v := os.Getenv(name)
	if v == "" {
		tb.Skipf("%s is not set", name)
	}
	return v
}
