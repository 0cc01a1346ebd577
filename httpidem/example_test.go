package httpidem_test

import (
	"context"
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

// The guard without net/http: what a handler on another HTTP stack (or a
// message consumer) calls. Check reads the key, Begin claims it, Finish
// stores the answer; a repeat gets the stored answer from Begin.
func ExampleMiddleware_Begin() {
	m, _ := httpidem.New(httpidem.Options{Store: memstore.New()})
	charges := 0
	handle := func(method, path, keyLine, body string) (int, string, string) {
		key, ans, out := m.Check(method, []string{keyLine})
		if out == httpidem.Unkeyed {
			return 0, "", "pass through" // not guarded: forward as it is
		}
		if ans == nil {
			var claim *httpidem.Claim
			claim, ans, _ = m.Begin(context.Background(), httpidem.Request{Method: method, Path: path, Key: key, Body: []byte(body)})
			if ans == nil { // claimed: run the request once and record its answer
				charges++
				answer := fmt.Sprintf("charge #%d", charges)
				claim.Finish(http.StatusCreated, http.Header{"Content-Type": {"text/plain"}}, []byte(answer))
				return http.StatusCreated, answer, ""
			}
		}
		return ans.Status, string(ans.Body), ans.Header.Get("Idempotent-Replayed")
	}
	for i := 0; i < 2; i++ {
		st, body, replayed := handle("POST", "/charge", `"order-1042"`, `{"amount":"19.99"}`)
		fmt.Printf("%d %q replayed=%q\n", st, body, replayed)
	}
	_, _, note := handle("GET", "/charge", `"order-1042"`, ``)
	fmt.Println("GET:", note)
	// Output:
	// 201 "charge #1" replayed=""
	// 201 "charge #1" replayed="true"
	// GET: pass through
}
