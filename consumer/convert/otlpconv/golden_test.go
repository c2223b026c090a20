package otlpconv

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/otlp"
)

var update = flag.Bool("update", false, "rewrite the golden CloudEvents files in testdata/otlp/golden")

const testdata = "../../../testdata/otlp"

// loadRequest reads an OTLP/JSON request and returns it as the record the
// producer stores: the signal from the file name prefix, binary protobuf.
func loadRequest(t testing.TB, name string) (format.SignalType, []byte) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	var msg proto.Message
	var sig format.SignalType
	switch {
	case strings.HasPrefix(name, "logs"):
		msg, sig = &collogspb.ExportLogsServiceRequest{}, format.SignalLogs
	case strings.HasPrefix(name, "metrics"):
		msg, sig = &colmetricspb.ExportMetricsServiceRequest{}, format.SignalMetrics
	case strings.HasPrefix(name, "traces"):
		msg, sig = &coltracepb.ExportTraceServiceRequest{}, format.SignalTraces
	default:
		t.Fatalf("%s: name must start with logs, metrics or traces", name)
	}
	if err := otlp.UnmarshalJSON(body, msg); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return sig, b
}

func loadConfig(t testing.TB, name string) Config {
	t.Helper()
	var cfg Config
	if name == "" {
		return cfg
	}
	b, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cfg
}

func registry(t testing.TB, cfg Config) *convert.Registry {
	t.Helper()
	reg := convert.NewRegistry()
	if err := Register(reg, cfg); err != nil {
		t.Fatal(err)
	}
	return reg
}

func record(sig format.SignalType, data []byte) convert.Record {
	return convert.Record{
		Location: "ingest/data/01J0000000000000000000TEST.batch", Sequence: 41, Index: 2,
		Header:          format.NewHeader(sig, format.EncodingOTLPProtobuf),
		IngestionTimeMs: 1718000099000, Data: data,
	}
}

func TestGolden(t *testing.T) {
	cases := []struct{ golden, input, config string }{
		{"logs", "logs.json", ""},
		{"logs-openmeter-api-calls", "logs-api-calls.json", "openmeter-api-calls.yaml"},
		{"metrics-sum", "metrics-sum.json", ""},
		{"metrics-gauge", "metrics-gauge.json", ""},
		{"metrics-histogram", "metrics-histogram.json", ""},
		{"metrics-exponential-histogram", "metrics-exponential-histogram.json", ""},
		{"metrics-summary", "metrics-summary.json", ""},
		{"traces", "traces.json", ""},
		{"traces-api-calls", "traces.json", "traces-api-calls.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			sig, data := loadRequest(t, tc.input)
			reg := registry(t, loadConfig(t, tc.config))
			events, err := reg.Convert(record(sig, data))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(events, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join(testdata, "golden", tc.golden+".events.json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("events differ from %s (go test -update rewrites it):\n%s", path, got)
			}
			// Every event is a valid CloudEvent for the metering API.
			for i, ev := range events {
				checkCloudEvent(t, i, ev)
			}
		})
	}
}

func checkCloudEvent(t *testing.T, i int, raw json.RawMessage) {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("event %d: %v", i, err)
	}
	for _, k := range []string{"specversion", "id", "source", "type", "subject", "time"} {
		if s, _ := ev[k].(string); s == "" {
			t.Errorf("event %d: %s missing or empty: %s", i, k, raw)
		}
	}
}
