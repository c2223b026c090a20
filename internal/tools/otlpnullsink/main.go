// Command otlpnullsink is the no-op OTLP/HTTP endpoint of `make compare`
// (scripts/compare.sh): the collector's otlphttp exporter sends to it. It
// reads every request body and answers 200 with an empty protobuf export
// response (a valid, fully successful ExportLogs/Metrics/TraceServiceResponse),
// so the collector's cost is measured against a sink that costs next to
// nothing. GET /stats reports the requests and body bytes received.
//
//	otlpnullsink --listen 127.0.0.1:4319
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync/atomic"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4319", "HOST:PORT to serve on")
	flag.Parse()
	var requests, bytes atomic.Int64
	mux := http.NewServeMux()
	export := func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		requests.Add(1)
		bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // empty body: an export response with no partial success
	}
	for _, p := range []string{"/v1/logs", "/v1/metrics", "/v1/traces"} {
		mux.HandleFunc(p, export)
	}
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "requests %d\nbytes %d\n", requests.Load(), bytes.Load())
	})
	log.Fatal(http.ListenAndServe(*listen, mux))
}
