package otlp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/ingest/reqbody"
)

// TestHTTPSlowBodyIsCutOff: an OTLP/HTTP client that declares 8 MiB and
// sends one byte is answered 408 with a Status (DEADLINE_EXCEEDED), counted,
// and its connection closed, plain or gzip. Before, the handler waited for
// ever.
func TestHTTPSlowBodyIsCutOff(t *testing.T) {
	for _, enc := range []string{"", "gzip"} {
		t.Run("encoding="+enc, func(t *testing.T) {
			rec := &recorder{}
			m := ingestmetrics.New(nil)
			srv := httptest.NewServer(NewHTTPHandler(rec, HTTPConfig{BodyLimits: reqbody.Limits{Timeout: 200 * time.Millisecond, MinRate: 1 << 20}}, m, nil))
			defer srv.Close()
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second)) // hang guard
			extra := ""
			if enc != "" {
				extra = "Content-Encoding: " + enc + "\r\n"
			}
			fmt.Fprintf(c, "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n\x1f", ContentTypeProtobuf, 8<<20, extra)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "too slowly") {
				t.Fatalf("status %d: %q", resp.StatusCode, body)
			}
			if !resp.Close {
				t.Errorf("408 without Connection: close")
			}
			if n, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("connection still open: read %d bytes", n)
			}
			if got := counterValue(t, m.Requests.WithLabelValues(FrontHTTP, "408")); got != 1 {
				t.Errorf("ingest_requests{code=408} = %v", got)
			}
			if len(rec.got()) != 0 {
				t.Errorf("the producer was called")
			}
		})
	}
}

// TestHTTPBodyBudget: with the shared body budget spent, a request is
// answered 429 with Retry-After; its bytes are released once it is done.
func TestHTTPBodyBudget(t *testing.T) {
	budget := reqbody.NewBudget(64 << 10)
	m := ingestmetrics.New(nil)
	h := NewHTTPHandler(&recorder{}, HTTPConfig{Budget: budget}, m, nil)
	big := append(mustProto(t, logsReq(1)), make([]byte, 100<<10)...) // too big for the budget
	w := post(t, h, "/v1/logs", ContentTypeProtobuf, "", big)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q, want 429", w.Code, w.Header().Get("Retry-After"))
	}
	if st := decodeStatus(t, w, ContentTypeProtobuf); !strings.Contains(st.Message, "memory bound") {
		t.Errorf("Status.message %q", st.Message)
	}
	if budget.Used() != 0 {
		t.Errorf("budget used %d after the request", budget.Used())
	}
	if w := post(t, h, "/v1/logs", ContentTypeProtobuf, "", mustProto(t, logsReq(1))); w.Code != http.StatusOK {
		t.Fatalf("small request: status %d", w.Code)
	}
	if budget.Used() != 0 {
		t.Errorf("budget used %d after the request", budget.Used())
	}
}
