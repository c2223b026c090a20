package bucket_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest/cas"
)

// cloudSameNamespace proves the data bucket and the manifest store opened
// from one YAML see the same objects under the same prefix.
func cloudSameNamespace(t *testing.T, bkt objstore.Bucket, store cas.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := store.WriteIf(ctx, "ingest/manifest", []byte("through the store"), "")
	if err != nil {
		t.Fatalf("create through the store: %v", err)
	}
	rc, err := bkt.Get(ctx, "ingest/manifest")
	if err != nil {
		t.Fatalf("object written through the store is not visible through the bucket: %v", err)
	}
	raw, _ := io.ReadAll(rc)
	rc.Close()
	if string(raw) != "through the store" {
		t.Fatalf("through the bucket: %q", raw)
	}
	if _, err := store.WriteIf(ctx, "ingest/manifest", []byte("x"), ""); !errors.Is(err, cas.ErrConflict) {
		t.Fatalf("create-only on an existing object: %v, want ErrConflict", err)
	}
	if _, err := store.WriteIf(ctx, "ingest/manifest", []byte("next"), v); err != nil {
		t.Fatalf("CAS at the current version: %v", err)
	}
	if err := bkt.Upload(ctx, "ingest/data/hand-made", bytes.NewReader([]byte("payload"))); err != nil {
		t.Fatal(err)
	}
	b, _, err := store.Read(ctx, "ingest/data/hand-made")
	if err != nil || string(b) != "payload" {
		t.Fatalf("object uploaded through the bucket, read through the store: %q, %v", b, err)
	}
}

func randomPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "bucketq-test/open-" + hex.EncodeToString(b[:])
}

// fakeServiceAccount returns a service-account key whose token_uri is a
// local fake token endpoint. objstore's GCS bucket insists on credentials
// (its no_auth switch is unexported) even with STORAGE_EMULATOR_HOST set.
func fakeServiceAccount(t *testing.T) string {
	t.Helper()
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"fake","token_type":"Bearer","expires_in":3600}`)
	}))
	t.Cleanup(tokens.Close)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "bucketq-test", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "test@bucketq-test.iam.gserviceaccount.com", "client_id": "1",
		"token_uri": tokens.URL + "/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(sa)
}

// TestOpenGCS opens the fake-gcs-server bucket from GCS YAML, the emulator
// named by STORAGE_EMULATOR_HOST as a user would.
func TestOpenGCS(t *testing.T) {
	endpoint, bkt := storetest.GCSEnv(t)
	t.Setenv("STORAGE_EMULATOR_HOST", endpoint)
	y := fmt.Sprintf("type: GCS\nconfig:\n  bucket: %s\n  service_account: %q\nprefix: %s\n", bkt, fakeServiceAccount(t), randomPrefix())
	b, store, err := bucket.Open(context.Background(), []byte(y), nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", y, err)
	}
	defer b.Close()
	cloudSameNamespace(t, b, store)
}

// TestOpenAzure opens the Azurite container from AZURE YAML with a
// connection string, as a user pointing at Azurite would.
func TestOpenAzure(t *testing.T) {
	e := storetest.AzureEnv(t)
	y := fmt.Sprintf("type: AZURE\nconfig:\n  storage_account: %s\n  container: %s\n  storage_connection_string: %q\nprefix: %s\n",
		e.Account, e.Container, e.ConnectionString(), randomPrefix())
	b, store, err := bucket.Open(context.Background(), []byte(y), nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", y, err)
	}
	defer b.Close()
	cloudSameNamespace(t, b, store)
}

func TestOpenCloudConfigErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"gcs without bucket", "type: GCS\nconfig:\n  service_account: ''\n", "bucket is required"},
		{"azure without container", "type: AZURE\nconfig:\n  storage_account: a\n  storage_account_key: a2V5\n", "container is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := bucket.Open(context.Background(), []byte(tc.yaml), nil)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("Open error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
