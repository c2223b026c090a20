package otlp

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bucketq/bucketq/ingest/auth"
	"github.com/bucketq/bucketq/ingest/ingestmetrics"
)

// TestHTTPUnauthorizedIsAStatus: OTLP/HTTP refuses a request without an
// accepted token with 401 and, like its other 4xx, a google.rpc.Status body
// (code UNAUTHENTICATED) in the request's content type: JSON for a JSON
// request, protobuf otherwise. Nothing is stored; the answer is counted.
func TestHTTPUnauthorizedIsAStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, ct, authz, want string
	}{
		{"protobuf", ContentTypeProtobuf, "", ContentTypeProtobuf},
		{"json", ContentTypeJSON, "Bearer wrong", ContentTypeJSON},
		{"json with charset", ContentTypeJSON + "; charset=utf-8", "", ContentTypeJSON},
		{"unsupported type", "text/plain", "", ContentTypeProtobuf},
		{"no type", "", "Basic czNjcmV0", ContentTypeProtobuf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec, m := &recorder{}, ingestmetrics.New(nil)
			h := NewHTTPHandler(rec, HTTPConfig{Tokens: []string{"s3cret"}}, m, nil)
			body := mustProto(t, logsReq(1))
			if tc.want == ContentTypeJSON {
				body = otlpJSON(t, logsReq(1))
			}
			req := httptest.NewRequest(http.MethodPost, "/v1/logs", bytes.NewReader(body))
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %q", w.Code, w.Body)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate %q, want Bearer", got)
			}
			st := decodeStatus(t, w, tc.want)
			if codes.Code(st.Code) != codes.Unauthenticated || st.Message != auth.RejectMessage {
				t.Errorf("Status{code %v, message %q}, want {Unauthenticated, %q}", codes.Code(st.Code), st.Message, auth.RejectMessage)
			}
			if n := len(rec.got()); n != 0 {
				t.Errorf("%d appends for an unauthorized request", n)
			}
			if got := counterValue(t, m.Requests.WithLabelValues(FrontHTTP, "401")); got != 1 {
				t.Errorf("ingest_requests{otlp-http,401} = %v, want 1", got)
			}
		})
	}
	// With the token, the same handler stores the request.
	rec := &recorder{}
	req := httptest.NewRequest(http.MethodPost, "/v1/logs", bytes.NewReader(mustProto(t, logsReq(1))))
	req.Header.Set("Content-Type", ContentTypeProtobuf)
	req.Header.Set("Authorization", "Bearer s3cret")
	w := httptest.NewRecorder()
	NewHTTPHandler(rec, HTTPConfig{Tokens: []string{"s3cret"}}, nil, nil).ServeHTTP(w, req)
	if w.Code != http.StatusOK || len(rec.got()) != 1 {
		t.Fatalf("with the token: status %d, %d appends", w.Code, len(rec.got()))
	}
}

// TestGRPCUnauthenticated: OTLP/gRPC behind the ingest tokens answers a
// call without an accepted token UNAUTHENTICATED, counted in
// ingest_requests by UnauthenticatedGRPC, and stores nothing.
func TestGRPCUnauthenticated(t *testing.T) {
	t.Parallel()
	m, rec := ingestmetrics.New(nil), &recorder{}
	cc := startGRPC(t, rec, m, auth.New([]string{"s3cret"}).GRPC(UnauthenticatedGRPC(m))...)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, authz := range []string{"", "Bearer wrong"} {
		ctx := ctx
		if authz != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", authz)
		}
		err := exportGRPC(ctx, cc, logsReq(1))
		if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != auth.RejectMessage {
			t.Errorf("authorization %q: %v, want Unauthenticated %q", authz, err, auth.RejectMessage)
		}
	}
	if got := counterValue(t, m.Requests.WithLabelValues(FrontGRPC, codes.Unauthenticated.String())); got != 2 {
		t.Errorf("ingest_requests{otlp-grpc,Unauthenticated} = %v, want 2", got)
	}
	if err := exportGRPC(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret"), cc, logsReq(1)); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	if n := len(rec.got()); n != 1 {
		t.Errorf("%d appends, want 1 (the authorized call)", n)
	}
}
