package httpidem_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/idemhq/idem/httpidem"
)

// BenchmarkMiddleware measures the middleware alone (no network between
// client and handler) per store: "first" claims and completes a new key,
// "replay" answers a completed one. Server stores run only when their
// IDEM_TEST_* variable is set. bench/serve.sh measures the whole proxy.
//
// "bare" is the same request to the handler without the middleware: the
// middleware's own cost is a store's time minus bare's (httptest's request
// and recorder are most of bare), the figure to hold against in-process
// middlewares such as idemlease (3.7 µs with its in-memory store).
func BenchmarkMiddleware(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"id":"ch_1","status":"succeeded"}`))
	})
	send := func(h http.Handler, key string) int {
		r := httptest.NewRequest("POST", "/charge", strings.NewReader(`{"order_id":"1042","amount":"19.99"}`))
		r.Header.Set("Idempotency-Key", `"`+key+`"`)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	b.Run("bare", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if c := send(handler, fmt.Sprintf("bare-%d", i)); c != 201 {
				b.Fatal(c)
			}
		}
	})
	for _, k := range storeKinds() {
		b.Run(k.name, func(b *testing.B) {
			s := k.open(b)
			m, err := httpidem.New(httpidem.Options{Store: s})
			if err != nil {
				b.Fatal(err)
			}
			h := m.Wrap(handler)
			run := fmt.Sprintf("%p", b)
			req := func(key string) int { return send(h, key) }
			b.Run("first", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					if c := req(fmt.Sprintf("%s-%d", run, i)); c != 201 {
						b.Fatal(c)
					}
				}
			})
			// Many clients at once, as a proxy sees them: stores that
			// group commits gain here.
			b.Run("first-parallel", func(b *testing.B) {
				var n atomic.Int64
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if c := req(fmt.Sprintf("%s-p%d", run, n.Add(1))); c != 201 {
							b.Error(c)
							return
						}
					}
				})
			})
			req(run + "-replay")
			b.Run("replay", func(b *testing.B) {
				for b.Loop() {
					if c := req(run + "-replay"); c != 201 {
						b.Fatal(c)
					}
				}
			})
		})
	}
}
