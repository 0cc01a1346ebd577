// Command proxycost is a bare reverse proxy, without idem's middleware, in
// three builds, to measure what the forwarding itself costs
// (bench/proxycost.sh): "std" is httputil.ReverseProxy on net/http's
// Transport, "fast" the same proxy on internal/upstream's Transport (idem
// serve's net/http front end, --engine std), "full" a fasthttp server with
// a fasthttp client (the floor under idem serve's default front end,
// internal/front, which adds the guard and the header rewriting).
package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"

	"github.com/idemhq/idem/internal/upstream"
	"github.com/valyala/fasthttp"
)

func main() {
	mode := flag.String("mode", "std", "std, fast or full")
	up := flag.String("upstream", "127.0.0.1:19000", "upstream host:port")
	listen := flag.String("listen", "127.0.0.1:19081", "address to serve on")
	flag.Parse()
	u := &url.URL{Scheme: "http", Host: *up}
	var err error
	switch *mode {
	case "std", "fast":
		var tr http.RoundTripper
		if *mode == "std" {
			std := http.DefaultTransport.(*http.Transport).Clone()
			std.MaxIdleConns, std.MaxIdleConnsPerHost = 1024, 1024
			tr = std
		} else if tr, err = upstream.New(u, upstream.Options{}); err != nil {
			break
		}
		p := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }, Transport: tr}
		err = http.ListenAndServe(*listen, p)
	case "full":
		c := &fasthttp.HostClient{Addr: *up, MaxConns: 1024, MaxIdemponentCallAttempts: 1}
		err = fasthttp.ListenAndServe(*listen, func(ctx *fasthttp.RequestCtx) {
			ctx.Request.SetHost(*up)
			if err := c.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.SetStatusCode(http.StatusBadGateway)
			}
		})
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	fmt.Fprintln(os.Stderr, "proxycost:", err)
	os.Exit(1)
}
