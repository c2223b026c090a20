package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketq/bucketq/internal/faultproxy"
	"github.com/bucketq/bucketq/internal/openmetertest"
)

// Helpers shared by TestChaos and TestChaosPartitions: the metering API's
// misbehaviour, the clients' requests and retries, the restart before the
// drain and the count of lost events.

// sinkFaults makes the metering API misbehave on and off until ctx ends —
// throttling (429 with Retry-After), outages (503), stalls of stall — then
// clears the faults. It returns when it has cleared them.
func sinkFaults(ctx context.Context, sink *openmetertest.Server, rnd *rand.Rand, stall time.Duration) {
	for ctx.Err() == nil {
		switch rnd.IntN(4) {
		case 0:
			sink.FailNext(3, http.StatusTooManyRequests, "1")
		case 1:
			sink.FailNext(2, http.StatusServiceUnavailable, "")
		case 2:
			sink.SetLatency(stall)
		case 3:
			sink.SetLatency(0)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(500+rnd.IntN(1500)) * time.Millisecond):
		}
	}
	sink.ClearFaults()
	sink.SetLatency(0)
}

// chaosRequest is request r of the clients: n CloudEvents with ids
// ev-{r*eventsPerReq+i}, one in poisonEvery flagged poison.
func chaosRequest(r, n int) (body []byte, ids []string, poison []bool) {
	var b bytes.Buffer
	b.WriteByte('[')
	ids = make([]string, n)
	poison = make([]bool, n)
	for i := range n {
		seq := r*eventsPerReq + i
		ids[i] = fmt.Sprintf("ev-%d", seq)
		poison[i] = seq%poisonEvery == poisonEvery-1
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"specversion":"1.0","type":"api-calls","id":%q,"source":"chaos","subject":"customer-%d","time":"2026-11-23T10:00:00Z","data":{"tokens":%d,"poison":%v}}`,
			ids[i], seq%50, seq%1000, poison[i])
	}
	b.WriteByte(']')
	return b.Bytes(), ids, poison
}

// postUntilAcked sends body to a random producer until one answers 204,
// counting every retry. It returns false after reporting request r
// rejected with 400 (the events are valid, so that is a bug).
func postUntilAcked(t *testing.T, httpc *http.Client, prods []*proc, rnd *rand.Rand, r int, body []byte, retries interface{ Add(int64) int64 }) bool {
	for {
		p := prods[rnd.IntN(len(prods))]
		resp, err := httpc.Post("http://"+p.addr+"/api/v1/events", "application/cloudevents-batch+json", bytes.NewReader(body))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return true
			}
			if resp.StatusCode == http.StatusBadRequest {
				t.Errorf("request %d rejected with 400", r)
				return false
			}
		}
		retries.Add(1)
		time.Sleep(time.Duration(50+rnd.IntN(200)) * time.Millisecond)
	}
}

// startStopped starts every process of ps that is not running (killed and
// not yet restarted), so the drain can finish; started is called with each.
func startStopped(t *testing.T, ps []*proc, started func(*proc)) {
	for _, p := range ps {
		p.mu.Lock()
		running := p.done != nil
		if running {
			select {
			case <-p.done:
				running = false
			default:
			}
		}
		p.mu.Unlock()
		if !running {
			p.start(t)
			if started != nil {
				started(p)
			}
		}
	}
}

// countLost compares the acked events (id → poison) with what the sink
// delivered and the dead letters hold: a valid event not delivered, or a
// poison event not dead-lettered, is lost.
func countLost(acked *sync.Map, delivered, dead map[string]bool) (lost, poisonWant, poisonFound int) {
	acked.Range(func(k, v any) bool {
		id := k.(string)
		if v.(bool) {
			poisonWant++
			if dead[id] {
				poisonFound++
			} else {
				lost++
			}
		} else if !delivered[id] {
			lost++
		}
		return true
	})
	return lost, poisonWant, poisonFound
}

// s3YAML is the object_store block of the S3 test bucket reached at
// endpoint (the server itself, or the fault proxy in front of it).
func s3YAML(bkt, endpoint, access, secret string) string {
	return fmt.Sprintf("type: S3\nconfig:\n  bucket: %s\n  endpoint: %s\n  access_key: %s\n  secret_key: %s\n  insecure: true\n", bkt, endpoint, access, secret)
}

// sinkBatchSize is every chaos consumer's sink_batch_size (the default,
// written by writeChaosConfig), a term of the redelivery bound.
const sinkBatchSize = 500

// writeChaosConfig writes dir/bucketq.yaml for the processes of a chaos
// run: the object store, every queue name under run/, the short intervals
// both chaos tests use (journal kept 2s, flush and poll 100ms, GC every
// second with gcGrace, no OTLP listeners), sink_batch_size (a term of the
// redelivery bound), and extra keys. It returns the path.
func writeChaosConfig(t *testing.T, dir, storeYAML, run, extra string) string {
	t.Helper()
	indented := "  " + strings.ReplaceAll(strings.TrimRight(storeYAML, "\n"), "\n", "\n  ") + "\n"
	cfg := "object_store:\n" + indented + fmt.Sprintf(`data_prefix: %[1]s/data
manifest_path: %[1]s/manifest
dead_letter_prefix: %[1]s/dead-letter
journal_prefix: %[1]s/journal
journal_retention: 2s
flush_interval: 100ms
poll_interval: 100ms
gc_interval: 1s
gc_grace_period: %[2]s
sink_batch_size: %[3]d
otlp_grpc: ""
otlp_http: ""
`, run, gcGrace, sinkBatchSize) + extra
	path := filepath.Join(dir, "bucketq.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startS3Faults starts the fault proxy in front of the S3 server at
// endpoint, faults off until Enable: 2 % errors, 1 % lost replies, 1 %
// dropped connections, up to 30 ms latency. It is closed when t ends.
func startS3Faults(t *testing.T, endpoint string) *faultproxy.Proxy {
	t.Helper()
	proxy, err := faultproxy.Start(faultproxy.Config{
		Target: "http://" + endpoint, ErrorRate: 0.02, LostReplyRate: 0.01, DropRate: 0.01,
		MaxLatency: 30 * time.Millisecond, FaultsDisabled: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	return proxy
}
