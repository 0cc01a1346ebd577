package upstream

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemhq/idem/internal/proxytest"
)

func proxyWith(t *testing.T, upURL string, tr http.RoundTripper) *httptest.Server {
	up, _ := url.Parse(upURL)
	p := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.SetXForwarded() },
		Transport: tr,
	}
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	return s
}

// TestSameAsNetHTTP sends each request through a reverse proxy on
// net/http's transport and through one on ours: the upstream must see the
// same request and the client the same answer.
func TestSameAsNetHTTP(t *testing.T) {
	up := proxytest.Echo(t)
	defer up.Close()
	u, _ := url.Parse(up.URL)
	ours, err := New(u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ours.CloseIdleConnections()
	std := proxyWith(t, up.URL, http.DefaultTransport.(*http.Transport).Clone())
	fast := proxyWith(t, up.URL, ours)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}

	for _, c := range proxytest.Cases() {
		t.Run(c.Name, func(t *testing.T) {
			for i := 0; i < 2; i++ { // the second time on a reused connection
				want := proxytest.Call(t, client, func() *http.Request { return c.Req(std.URL) })
				got := proxytest.Call(t, client, func() *http.Request { return c.Req(fast.URL) })
				// The upstream saw the proxy's own address in X-Forwarded-Host.
				got.Body = strings.ReplaceAll(got.Body, strings.TrimPrefix(fast.URL, "http://"), "PROXY")
				want.Body = strings.ReplaceAll(want.Body, strings.TrimPrefix(std.URL, "http://"), "PROXY")
				if !reflect.DeepEqual(got, want) {
					if len(want.Body) > 400 {
						want.Body, got.Body = want.Body[:400], got.Body[:min(400, len(got.Body))]
					}
					t.Fatalf("through ours:\n%+v\nthrough net/http:\n%+v", got, want)
				}
			}
		})
	}
}

// staleUpstream answers each connection's first request, then closes the
// connection without saying so, as a server whose keep-alive timeout has
// just passed would: the next request sent on it gets no answer.
func staleUpstream(t *testing.T) (addr string, served *atomic.Int64) {
	return proxytest.RawOnce(t, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
}

// TestRetryOnlyWhatMayBeReplayed: a request that meets a connection the
// server closed is sent again only if it may be replayed (a keyed POST);
// an unkeyed POST gets the error, as with net/http.
func TestRetryOnlyWhatMayBeReplayed(t *testing.T) {
	addr, served := staleUpstream(t)
	u, _ := url.Parse("http://" + addr)
	tr, err := New(u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	send := func(keyed bool) error {
		body := []byte("{}")
		r, _ := http.NewRequest("POST", "http://"+addr+"/charge", bytes.NewReader(body))
		if keyed {
			r.Header.Set("Idempotency-Key", `"k"`)
		}
		res, err := tr.RoundTrip(r)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		return res.Body.Close()
	}
	if err := send(true); err != nil {
		t.Fatal(err)
	}
	// The pooled connection is now closed by the server.
	if err := send(true); err != nil {
		t.Fatalf("keyed POST on a stale connection: %v (want a retry on a new one)", err)
	}
	if got := served.Load(); got != 2 {
		t.Fatalf("upstream served %d requests, want 2", got)
	}
	if err := send(false); err == nil {
		t.Fatal("unkeyed POST on a stale connection succeeded: it must not be retried")
	}
	if got := served.Load(); got != 2 {
		t.Fatalf("upstream served %d requests, want still 2", got)
	}
}

type counting struct {
	n  atomic.Int64
	rt http.RoundTripper
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

// TestUpgradeGoesToFallback: protocol upgrades are net/http's.
func TestUpgradeGoesToFallback(t *testing.T) {
	up := proxytest.Echo(t)
	defer up.Close()
	u, _ := url.Parse(up.URL)
	fb := &counting{rt: http.DefaultTransport}
	tr, err := New(u, Options{Fallback: fb})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest("GET", up.URL+"/ws", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	res, err := tr.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	r, _ = http.NewRequest("GET", up.URL+"/plain", nil)
	res, err = tr.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if fb.n.Load() != 1 {
		t.Fatalf("fallback served %d requests, want 1 (the upgrade)", fb.n.Load())
	}
}

func TestNewRejectsNonHTTP(t *testing.T) {
	for _, s := range []string{"ftp://x", "http://", "/relative"} {
		u, _ := url.Parse(s)
		if _, err := New(u, Options{}); err == nil {
			t.Errorf("New(%q) accepted", s)
		}
	}
}

// TestHTTPSOrigin: an https:// origin is reached over TLS, checked against
// the given roots.
func TestHTTPSOrigin(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls=%v host=%s", r.TLS != nil, r.Host)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	roots := up.Client().Transport.(*http.Transport).TLSClientConfig
	tr, err := New(u, Options{TLS: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	r, _ := http.NewRequest("GET", up.URL+"/x", nil)
	res, err := tr.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := "tls=true host=" + u.Host; string(b) != want {
		t.Fatalf("got %q, want %q", b, want)
	}
	// Without those roots the server's certificate is refused.
	plain, _ := New(u, Options{})
	defer plain.CloseIdleConnections()
	r, _ = http.NewRequest("GET", up.URL+"/x", nil)
	if _, err := plain.RoundTrip(r); err == nil {
		t.Fatal("an unknown certificate was accepted")
	}
}

// TestWaitsForAFreeConnection: past MaxConns a request waits for a
// connection instead of failing at once.
func TestWaitsForAFreeConnection(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		fmt.Fprint(w, "ok")
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	tr, err := New(u, Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			r, _ := http.NewRequest("GET", up.URL+"/x", nil)
			res, err := tr.RoundTrip(r)
			if err == nil {
				_, err = io.ReadAll(res.Body)
				res.Body.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("a request past MaxConns failed instead of waiting: %v", err)
		}
	}
}
