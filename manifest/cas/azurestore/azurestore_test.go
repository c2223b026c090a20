package azurestore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/azurestore"
	"github.com/bucketq/bucketq/manifest/cas/castest"
)

func TestAcceptance(t *testing.T) {
	s := storetest.AzureStore(t)
	castest.Run(t, func(t *testing.T) cas.Store { return s })
}

// TestOpenYAMLConnectionString opens the store from thanos-style YAML, as
// bucket.Open does, pointing at the emulator with a connection string.
func TestOpenYAMLConnectionString(t *testing.T) {
	e := storetest.AzureEnv(t)
	storetest.AzureStore(t) // creates the container
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	yml := "type: AZURE\nconfig:\n  storage_account: " + e.Account + "\n  container: " + e.Container +
		"\n  storage_connection_string: '" + e.ConnectionString() + "'\n  max_retries: 2\n"
	s, err := azurestore.Open(ctx, []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	castest.RoundTrip(t, ctx, s, uniqueName(t))
}

// TestEmulatorEnforcesPreconditions uses the SDK directly, not the store:
// if Azurite ever stops enforcing If-Match / If-None-Match, the acceptance
// suite above would prove nothing, so this fails loudly.
func TestEmulatorEnforcesPreconditions(t *testing.T) {
	e := storetest.AzureEnv(t)
	storetest.AzureStore(t) // creates the container
	cred, err := container.NewSharedKeyCredential(e.Account, e.Key)
	if err != nil {
		t.Fatal(err)
	}
	cont, err := container.NewClientWithSharedKeyCredential(e.Endpoint+"/"+e.Container, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bb := cont.NewBlockBlobClient(uniqueName(t))
	put := func(body string, mac blob.ModifiedAccessConditions) (azcore.ETag, int) {
		t.Helper()
		resp, err := bb.Upload(ctx, nopCloser{strings.NewReader(body)}, &blockblob.UploadOptions{
			AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &mac},
		})
		if err == nil {
			return *resp.ETag, http.StatusCreated
		}
		var re *azcore.ResponseError
		if !errors.As(err, &re) {
			t.Fatalf("upload: %v", err)
		}
		return "", re.StatusCode
	}
	content := func() string {
		t.Helper()
		resp, err := bb.DownloadStream(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	star := azcore.ETagAny
	first, code := put("one", blob.ModifiedAccessConditions{IfNoneMatch: &star})
	if code != http.StatusCreated {
		t.Fatalf("If-None-Match: * on a new blob: HTTP %d, want 201", code)
	}
	second, code := put("two", blob.ModifiedAccessConditions{IfMatch: &first})
	if code != http.StatusCreated || second == first {
		t.Fatalf("If-Match current etag: HTTP %d etag %q (first %q), want 201 and a new etag", code, second, first)
	}
	bogus := azcore.ETag(`"0x8DEADBEEF000000"`)
	steps := []struct {
		desc string
		mac  blob.ModifiedAccessConditions
		want []int
	}{
		{"If-None-Match: * on an existing blob", blob.ModifiedAccessConditions{IfNoneMatch: &star}, []int{http.StatusConflict, http.StatusPreconditionFailed}},
		{"If-Match stale etag", blob.ModifiedAccessConditions{IfMatch: &first}, []int{http.StatusPreconditionFailed}},
		{"If-Match etag never issued", blob.ModifiedAccessConditions{IfMatch: &bogus}, []int{http.StatusPreconditionFailed}},
	}
	for _, st := range steps {
		_, code := put("three", st.mac)
		ok := false
		for _, w := range st.want {
			ok = ok || code == w
		}
		if !ok {
			t.Fatalf("%s: HTTP %d, want one of %v: the emulator no longer enforces preconditions", st.desc, code, st.want)
		}
		if got := content(); got != "two" {
			t.Fatalf("after %s: content %q, want %q", st.desc, got, "two")
		}
	}
}

// landThenFail forwards the first PUT to the emulator and then tells the
// client it failed with 503, as a lost response would.
type landThenFail struct {
	puts atomic.Int32
}

func (l *landThenFail) Do(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPut || l.puts.Add(1) > 1 {
		return http.DefaultClient.Do(r)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return &http.Response{
		StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
		Header: http.Header{"X-Ms-Error-Code": {"ServerBusy"}}, Request: r,
		Body: io.NopCloser(bytes.NewReader(nil)),
	}, nil
}

// TestLandedWriteIsNeverAConflict: when a conditional write lands but its
// response is lost, WriteIf must report an unknown outcome, not retry into
// a 409/412 and report ErrConflict (which would claim "not written").
func TestLandedWriteIsNeverAConflict(t *testing.T) {
	storetest.AzureStore(t) // creates the container
	tr := &landThenFail{}
	s := storetest.AzureStore(t, azurestore.WithTransport(tr))
	tr.puts.Store(0) // the container creation above was a PUT
	castest.LandedWriteIsNeverAConflict(t, s, uniqueName(t), tr.puts.Load)
}

// TestMissingContainerIsNotAConflict: a 404 for the container must not be
// mistaken for a lost race.
func TestMissingContainerIsNotAConflict(t *testing.T) {
	e := storetest.AzureEnv(t)
	s, err := azurestore.New(context.Background(), azurestore.Config{
		StorageAccountName: e.Account, StorageAccountKey: e.Key, ContainerName: "no-such-container-" + hex.EncodeToString(randBytes(4)),
	}, azurestore.WithServiceURL(e.Endpoint))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range []cas.Version{"", `"0x8DEADBEEF000000"`} {
		_, err := s.WriteIf(ctx, "m", []byte("x"), v)
		if err == nil || errors.Is(err, cas.ErrConflict) {
			t.Fatalf("WriteIf(version %q) into a missing container: %v, want a non-conflict error", v, err)
		}
	}
	if _, _, err := s.Read(ctx, "m"); err == nil || errors.Is(err, cas.ErrNotExist) {
		t.Fatalf("Read from a missing container: %v, want an error other than ErrNotExist", err)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		check      func(azurestore.Config) bool
		wantErr    string
	}{
		{"bare block with key", "storage_account: acc\nstorage_account_key: a2V5\ncontainer: c\nendpoint: blob.core.chinacloudapi.cn\n",
			func(c azurestore.Config) bool {
				return c.StorageAccountName == "acc" && c.StorageAccountKey == "a2V5" && c.ContainerName == "c" && c.Endpoint == "blob.core.chinacloudapi.cn"
			}, ""},
		{"full objstore config, unknown keys ignored", "type: AZURE\nprefix: x\nconfig:\n  storage_account: acc\n  container: c\n  msi_resource: r\n  pipeline_config:\n    max_tries: 4\n",
			func(c azurestore.Config) bool { return c.StorageAccountName == "acc" && c.PipelineConfig.MaxTries == 4 }, ""},
		{"other provider", "type: GCS\nconfig:\n  bucket: b\n", nil, `type is "GCS"`},
		{"no container", "storage_account: acc\nstorage_account_key: k\n", nil, "container is required"},
		{"no account", "container: c\n", nil, "storage_account is required"},
		{"key and connection string", "storage_account: a\ncontainer: c\nstorage_account_key: k\nstorage_connection_string: s\n", nil, "cannot both be set"},
		{"partial client secret", "storage_account: a\ncontainer: c\nclient_id: id\n", nil, "must be set together"},
		{"bad yaml", "container: [", nil, "parse config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := azurestore.ParseConfig([]byte(tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(got) {
				t.Fatalf("ParseConfig = %+v, %v", got, err)
			}
		})
	}
}

func TestBadKey(t *testing.T) {
	_, err := azurestore.Open(context.Background(), []byte("storage_account: a\ncontainer: c\nstorage_account_key: 'not base64!'\n"))
	if err == nil || !strings.Contains(err.Error(), "storage_account_key") {
		t.Fatalf("error %v, want one naming storage_account_key", err)
	}
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func uniqueName(t *testing.T) string {
	return "bucketq-test/" + t.Name() + "-" + hex.EncodeToString(randBytes(6)) + "/manifest"
}
