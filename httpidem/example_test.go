package httpidem_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/idemhq/idem/httpidem"
	"github.com/idemhq/idem/memstore"
)

// Guard a payment endpoint: a retried POST with the same Idempotency-Key
// gets the first response back instead of charging twice.
func Example() {
	charges := 0
	charge := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		charges++
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "charge #%d\n", charges)
	})
	// memstore is for tests; use sqlite.OpenKeyStore, postgres.OpenKeyStore
	// or redis.Open in production.
	m, err := httpidem.New(httpidem.Options{Store: memstore.New()})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(m.Wrap(charge))
	defer srv.Close()

	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("POST", srv.URL+"/charge", strings.NewReader(`{"order_id":1042,"amount":"19.99"}`))
		req.Header.Set("Idempotency-Key", `"order-1042"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d replayed=%q %s", resp.StatusCode, resp.Header.Get("Idempotent-Replayed"), body)
	}
	fmt.Println("charges:", charges)
	// Output:
	// 201 replayed="" charge #1
	// 201 replayed="true" charge #1
	// charges: 1
}

// The same key with a different body is a client bug: 422, not a charge.
func ExampleMiddleware_Wrap_mismatch() {
	m, _ := httpidem.New(httpidem.Options{Store: memstore.New()})
	srv := httptest.NewServer(m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})))
	defer srv.Close()
	for _, body := range []string{`{"amount":"19.99"}`, `{"amount":"29.99"}`} {
		req, _ := http.NewRequest("POST", srv.URL+"/charge", strings.NewReader(body))
		req.Header.Set("Idempotency-Key", `"order-1042"`)
		resp, _ := http.DefaultClient.Do(req)
		resp.Body.Close()
		fmt.Println(strings.TrimSpace(fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("Content-Type"))))
	}
	// Output:
	// 201
	// 422 application/problem+json
}
