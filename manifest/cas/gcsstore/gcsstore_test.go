package gcsstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/castest"
	"github.com/bucketq/bucketq/manifest/cas/gcsstore"
)

func TestAcceptance(t *testing.T) {
	s := storetest.GCSStore(t)
	castest.Run(t, func(t *testing.T) cas.Store { return s })
}

// TestOpenYAMLViaEmulatorHost opens the store from thanos-style YAML, as
// bucket.Open does, with the emulator named by STORAGE_EMULATOR_HOST.
func TestOpenYAMLViaEmulatorHost(t *testing.T) {
	endpoint, bucket := storetest.GCSEnv(t)
	t.Setenv("STORAGE_EMULATOR_HOST", endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := gcsstore.Open(ctx, []byte("type: GCS\nconfig:\n  bucket: "+bucket+"\n  max_retries: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	castest.RoundTrip(t, ctx, s, uniqueName(t))
}

// TestEmulatorEnforcesPreconditions talks to the emulator's JSON API
// directly: if fake-gcs-server ever stops enforcing ifGenerationMatch, the
// acceptance suite above would prove nothing, so this fails loudly.
func TestEmulatorEnforcesPreconditions(t *testing.T) {
	endpoint, bucket := storetest.GCSEnv(t)
	name := uniqueName(t)
	upload := func(body string, ifGen string) (int, map[string]any) {
		t.Helper()
		u := fmt.Sprintf("%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s&ifGenerationMatch=%s",
			endpoint, url.PathEscape(bucket), url.QueryEscape(name), ifGen)
		resp, err := http.Post(u, "application/octet-stream", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var obj map[string]any
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &obj)
		return resp.StatusCode, obj
	}
	content := func() string {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("%s/storage/v1/b/%s/o/%s?alt=media", endpoint, url.PathEscape(bucket), url.PathEscape(name)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	code, obj := upload("one", "0")
	if code != http.StatusOK {
		t.Fatalf("create with ifGenerationMatch=0 on a new object: HTTP %d, want 200", code)
	}
	gen, _ := obj["generation"].(string)
	if gen == "" || gen == "0" {
		t.Fatalf("create returned generation %q", gen)
	}
	steps := []struct {
		desc, body, ifGen string
		want              int
		after             string
	}{
		{"ifGenerationMatch=0 on an existing object", "two", "0", http.StatusPreconditionFailed, "one"},
		{"stale ifGenerationMatch", "two", "1", http.StatusPreconditionFailed, "one"},
		{"current ifGenerationMatch", "three", gen, http.StatusOK, "three"},
		{"the replaced generation again", "four", gen, http.StatusPreconditionFailed, "three"},
	}
	for _, st := range steps {
		code, _ := upload(st.body, st.ifGen)
		if code != st.want {
			t.Fatalf("%s: HTTP %d, want %d: the emulator no longer enforces preconditions", st.desc, code, st.want)
		}
		if got := content(); got != st.after {
			t.Fatalf("after %s: content %q, want %q", st.desc, got, st.after)
		}
	}
}

// landThenFail forwards the first upload to the emulator and then tells the
// client it failed with 503, as a lost response or a server error after the
// commit would.
type landThenFail struct {
	next    http.RoundTripper
	uploads atomic.Int32
}

func (l *landThenFail) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.Contains(r.URL.Path, "/upload/") {
		return l.next.RoundTrip(r)
	}
	if l.uploads.Add(1) > 1 {
		return l.next.RoundTrip(r)
	}
	resp, err := l.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return &http.Response{
		StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
		Header: http.Header{"Content-Type": {"application/json"}}, Request: r,
		Body: io.NopCloser(bytes.NewReader([]byte(`{"error":{"code":503,"message":"injected"}}`))),
	}, nil
}

// TestLandedWriteIsNeverAConflict: when a conditional write lands but its
// response is lost, WriteIf must report an unknown outcome, not retry into
// a 412 and report ErrConflict (which would claim "not written").
func TestLandedWriteIsNeverAConflict(t *testing.T) {
	rt := &landThenFail{next: http.DefaultTransport}
	s := storetest.GCSStore(t, gcsstore.WithHTTPClient(&http.Client{Transport: rt}))
	castest.LandedWriteIsNeverAConflict(t, s, uniqueName(t), rt.uploads.Load)
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       gcsstore.Config
		wantErr    string
	}{
		{"bare block", "bucket: b\nservice_account: ''\nchunk_size_bytes: 1024\n", gcsstore.Config{Bucket: "b"}, ""},
		{"full objstore config", "type: GCS\nconfig:\n  bucket: b2\n  max_retries: 3\nprefix: p\n", gcsstore.Config{Bucket: "b2", MaxRetries: 3}, ""},
		{"grpc", "bucket: b\nuse_grpc: true\ngrpc_conn_pool_size: 4\n", gcsstore.Config{Bucket: "b", UseGRPC: true, GRPCConnPoolSize: 4}, ""},
		{"other provider", "type: S3\nconfig:\n  bucket: b\n", gcsstore.Config{}, `type is "S3"`},
		{"no bucket", "type: GCS\nconfig:\n  max_retries: 1\n", gcsstore.Config{}, "bucket is required"},
		{"bad yaml", "bucket: [", gcsstore.Config{}, "parse config"},
		{"bad field type", "bucket: b\nmax_retries: lots\n", gcsstore.Config{}, "parse config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := gcsstore.ParseConfig([]byte(tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseConfig = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestBadServiceAccount(t *testing.T) {
	_, err := gcsstore.Open(context.Background(), []byte("bucket: b\nservice_account: 'not json'\n"))
	if err == nil || !strings.Contains(err.Error(), "service_account") {
		t.Fatalf("error %v, want one naming service_account", err)
	}
}

func uniqueName(t *testing.T) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "bucketq-test/" + t.Name() + "-" + hex.EncodeToString(b[:]) + "/manifest"
}
