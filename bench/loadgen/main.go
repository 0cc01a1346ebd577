// Command loadgen measures what `idem serve` adds to a request. It has
// three parts, run as separate processes by bench/serve.sh:
//
//	loadgen -upstream 127.0.0.1:9000                 a small upstream API (201 + a JSON body)
//	loadgen -url URL -rate 2000 -duration 20s        open-loop load: unique-key POSTs at a fixed rate
//	loadgen -url URL -mode replay -rate 2000 ...     the same, but every request repeats a completed key
//	loadgen -url URL -mode max -concurrency 64 ...   closed-loop: as fast as the proxy answers
//
// Open-loop latency is measured from each request's scheduled send time,
// so a proxy that falls behind shows up as growing latency instead of a
// silently lower rate (no coordinated omission). Prints one JSON object.
//
// Both the client and the upstream run on fasthttp by default (-engine
// fasthttp): the instrument shares the machine's two cores with the proxy
// and the stores it measures, and with net/http's client and server
// (-engine net/http) it used about twice the CPU of the proxy itself
// (bench/README.md has the figures), which showed up as queueing in the
// tails it was measuring.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemhq/idem/bench/internal/openloop"
	"github.com/valyala/fasthttp"
)

func main() {
	upstream := flag.String("upstream", "", "serve the small upstream API on this address")
	url := flag.String("url", "", "POST to this URL")
	mode := flag.String("mode", "rate", "rate (unique keys, fixed rate), replay (completed keys, fixed rate) or max (closed loop)")
	rate := flag.Int("rate", 2000, "requests per second (rate, replay)")
	dur := flag.Duration("duration", 20*time.Second, "how long to send")
	conc := flag.Int("concurrency", 64, "workers (max)")
	keys := flag.Int("keys", 1000, "distinct completed keys to replay (replay)")
	label := flag.String("label", "", "label copied into the output")
	trace := flag.String("trace", "", "write each request's send offset and latency (µs, CSV) to this file (rate, replay)")
	warmup := flag.Duration("warmup", 0, "send at the rate for this long first, and leave those requests out of the figures (rate, replay); the trace keeps them")
	engine := flag.String("engine", "fasthttp", "HTTP stack of the client and the upstream: fasthttp or net/http")
	flag.Parse()
	if *engine != "fasthttp" && *engine != "net/http" {
		fmt.Fprintf(os.Stderr, "loadgen: unknown -engine %q\n", *engine)
		os.Exit(2)
	}
	if *upstream != "" {
		serveUpstream(*upstream, *engine)
		return
	}
	if *url == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url or -upstream is required")
		os.Exit(2)
	}
	c := newClient(*engine)
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	var res result
	switch *mode {
	case "rate":
		res = openLoop(c, *url, *rate, *warmup, *dur, func(i int) string { return fmt.Sprintf("%s-%d", run, i) })
	case "replay":
		// Complete the keys first, then replay them in a cycle.
		for i := 0; i < *keys; i++ {
			c.send(*url, fmt.Sprintf("%s-r%d", run, i))
		}
		res = openLoop(c, *url, *rate, *warmup, *dur, func(i int) string { return fmt.Sprintf("%s-r%d", run, i%*keys) })
	case "max":
		res = closedLoop(c, *url, *conc, *dur, run)
	default:
		fmt.Fprintf(os.Stderr, "loadgen: unknown -mode %q\n", *mode)
		os.Exit(2)
	}
	res.Label, res.Mode = *label, *mode
	if *trace != "" {
		if err := writeTrace(*trace, res.samples); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

func serveUpstream(addr, engine string) {
	var n atomic.Int64
	var err error
	if engine == "fasthttp" {
		srv := &fasthttp.Server{
			NoDefaultServerHeader: true,
			Handler: func(ctx *fasthttp.RequestCtx) {
				ctx.SetContentType("application/json")
				ctx.SetStatusCode(http.StatusCreated)
				fmt.Fprintf(ctx, `{"id":"ch_%d","status":"succeeded"}`, n.Add(1))
			},
		}
		err = srv.ListenAndServe(addr)
	} else {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id":"ch_%d","status":"succeeded"}`, n.Add(1))
		})
		err = (&http.Server{Addr: addr, Handler: h}).ListenAndServe()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen upstream:", err)
		os.Exit(1)
	}
}

// client sends the benchmark's requests with one of the two HTTP stacks.
type client struct {
	std  *http.Client
	fast *fasthttp.Client
}

func newClient(engine string) *client {
	if engine == "net/http" {
		return &client{std: &http.Client{Transport: &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute}, Timeout: 30 * time.Second}}
	}
	return &client{fast: &fasthttp.Client{
		MaxConnsPerHost:     4096,
		MaxIdleConnDuration: time.Minute,
		ReadTimeout:         30 * time.Second,
		WriteTimeout:        30 * time.Second,
		// Latency is the measurement: a pooled connection the server has
		// closed must fail and count, not be retried silently.
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}}
}

// send POSTs one request and returns its status (0 on a transport error)
// and whether it was a replay.
func (c *client) send(url, key string) (int, bool) {
	body := `{"order_id":"` + key + `","amount":"19.99"}`
	if c.fast != nil {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		req.Header.SetMethod(http.MethodPost)
		req.Header.SetContentType("application/json")
		req.Header.Set("Idempotency-Key", `"`+key+`"`)
		req.SetBodyString(body)
		if err := c.fast.Do(req, resp); err != nil {
			return 0, false
		}
		return resp.StatusCode(), string(resp.Header.Peek("Idempotent-Replayed")) == "true"
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", `"`+key+`"`)
	resp, err := c.std.Do(req)
	if err != nil {
		return 0, false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Idempotent-Replayed") == "true"
}

type result struct {
	Label    string         `json:"label"`
	Mode     string         `json:"mode"`
	Sent     int            `json:"sent"`
	Warmup   int            `json:"warmup_sent"` // sent before Sent, left out of the figures
	Rate     float64        `json:"achieved_rps"`
	Status   map[string]int `json:"status"`
	Replayed int            `json:"replayed"`
	P50      float64        `json:"p50_ms"`
	P90      float64        `json:"p90_ms"`
	P99      float64        `json:"p99_ms"`
	P999     float64        `json:"p999_ms"`
	Max      float64        `json:"max_ms"`
	Mean     float64        `json:"mean_ms"`
	samples  []sample
}

type sample struct {
	at       time.Duration // scheduled send time from the start (open loop)
	lat      time.Duration
	status   int
	replayed bool
}

func summarize(s []sample, elapsed time.Duration) result {
	r := result{Sent: len(s), Status: map[string]int{}, Rate: float64(len(s)) / elapsed.Seconds(), samples: s}
	lats := make([]time.Duration, len(s))
	var sum time.Duration
	for i, x := range s {
		lats[i] = x.lat
		sum += x.lat
		r.Status[fmt.Sprint(x.status)]++
		if x.replayed {
			r.Replayed++
		}
	}
	slices.Sort(lats)
	q := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return float64(lats[min(len(lats)-1, int(p*float64(len(lats))))].Microseconds()) / 1000
	}
	r.P50, r.P90, r.P99, r.P999 = q(0.50), q(0.90), q(0.99), q(0.999)
	if len(lats) > 0 {
		r.Max = float64(lats[len(lats)-1].Microseconds()) / 1000
		r.Mean = float64(sum.Microseconds()) / 1000 / float64(len(lats))
	}
	return r
}

// openLoop sends request i at start + i/rate, whatever the answers do.
// The requests of the first warmup are sent but not counted: a server just
// started opens its connections and fills its caches then, which is not
// the steady state the figures describe.
func openLoop(c *client, url string, rate int, warmup, dur time.Duration, key func(int) string) result {
	skip := int(warmup.Seconds() * float64(rate))
	n := skip + int(dur.Seconds()*float64(rate))
	out := make([]sample, n)
	start := openloop.Run(n, rate, func(i int, due time.Time, at time.Duration) {
		st, rep := c.send(url, key(i))
		out[i] = sample{at, time.Since(due), st, rep}
	})
	res := summarize(out[skip:], time.Since(start.Add(warmup)))
	res.Warmup = skip
	res.samples = out
	return res
}

// closedLoop runs conc workers back to back for dur: the throughput ceiling.
func closedLoop(c *client, url string, conc int, dur time.Duration, run string) result {
	var mu sync.Mutex
	var all []sample
	var seq atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []sample
			for time.Now().Before(end) {
				t := time.Now()
				st, rep := c.send(url, fmt.Sprintf("%s-m%d", run, seq.Add(1)))
				mine = append(mine, sample{t.Sub(start), time.Since(t), st, rep})
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return summarize(all, time.Since(start))
}

// writeTrace writes one line per request, in send order: where in the run
// the tail happens (start-up, periodic stalls) is what a summary hides.
func writeTrace(path string, s []sample) error {
	var b bytes.Buffer
	b.WriteString("at_us,latency_us,status\n")
	for _, x := range s {
		fmt.Fprintf(&b, "%d,%d,%d\n", x.at.Microseconds(), x.lat.Microseconds(), x.status)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	return nil
}
