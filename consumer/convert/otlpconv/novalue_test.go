package otlpconv

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/format"
)

// A data point flagged NoRecordedValue (or a sum/gauge whose number is NaN
// or infinite) gives no event and is counted; the rest of the request is
// converted, and later points keep their ids (their item index counts the
// skipped points).
func TestNoValuePointsAreSkippedAndCounted(t *testing.T) {
	sub := []*commonpb.KeyValue{kv("subject", "c1")}
	num := func(f float64, flags uint32) *metricspb.NumberDataPoint {
		return &metricspb.NumberDataPoint{TimeUnixNano: 5e18, Flags: flags, Attributes: sub, Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: f}}
	}
	noValue := uint32(metricspb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK)
	data, err := proto.Marshal(&colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
		{Name: "tokens", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{AggregationTemporality: 1, DataPoints: []*metricspb.NumberDataPoint{
			num(1, 0),                // item 0: event
			num(math.NaN(), noValue), // item 1: staleness marker
			num(7, noValue),          // item 2: flagged, whatever the value
		}}}},
		{Name: "load", Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{
			num(math.NaN(), 0),   // item 3: NaN without the flag
			num(math.Inf(-1), 0), // item 4
			num(0.5, 0),          // item 5: event
		}}}},
		// item 6: a summary with no observations has NaN quantiles; it is
		// converted, the quantile values written as null.
		{Name: "latency", Data: &metricspb.Metric_Summary{Summary: &metricspb.Summary{DataPoints: []*metricspb.SummaryDataPoint{
			{TimeUnixNano: 5e18, Attributes: sub, QuantileValues: []*metricspb.SummaryDataPoint_ValueAtQuantile{{Quantile: 0.99, Value: math.NaN()}}},
		}}}},
	}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg := convert.NewRegistry()
	c.Register(reg)
	rec := record(format.SignalMetrics, data)
	evs, err := reg.Convert(rec)
	if err != nil {
		t.Fatalf("the request was rejected: %v", err)
	}
	got := ids(t, evs)
	want := []string{EventID(rec.Data, 0), EventID(rec.Data, 5), EventID(rec.Data, 6)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ids %v, want items 0, 5 and 6: %v\n%s", got, want, evs)
	}
	if n := c.NoValuePoints(); n != 4 {
		t.Errorf("NoValuePoints = %d, want 4", n)
	}
	if !strings.Contains(string(evs[2]), `"quantile_values":[{"quantile":0.99,"value":null}]`) {
		t.Errorf("summary event: %s", evs[2])
	}
	for i, ev := range evs {
		if !json.Valid(ev) {
			t.Errorf("event %d is not valid JSON: %s", i, ev)
		}
	}
}

// A NaN attribute in the default data is written as null; in a mapped data
// field it still rejects the record (TestRecordErrorsNameTheReason).
func TestNaNInDefaultDataIsNull(t *testing.T) {
	evs, err := registry(t, Config{}).Convert(record(format.SignalLogs, logsRecord(t,
		&logspb.LogRecord{TimeUnixNano: 1, Attributes: []*commonpb.KeyValue{kv("subject", "c1"), kv("x", math.NaN())}})))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(evs[0]), `"data":{"attributes":{"subject":"c1","x":null}}`) {
		t.Errorf("event %s", evs[0])
	}
}

const (
	publishedRecordHex = "0a2612241210320e0a077375626a65637412030a01631210320e0a077375626a65637412030a0163"
	publishedDigest    = "27ff591b02ec9b5c480c16192da25425c6c270a760517b86f8dce35340035460" // SHA-256 of the record
	publishedID0       = "9aa6f379-c566-5539-9f7e-8ad8711853f4"
	publishedID1       = "5cd716ee-3181-5b1a-9cfe-69be4c504af1"
)

// The id example published in rfcs/0006-dead-letters-and-event-ids.md: an
// ExportLogsServiceRequest of two identical log records with the attribute
// subject "c", stored as these bytes (what ingest/otlp stores for it).
func TestPublishedIDExample(t *testing.T) {
	if got, want := uuidV5String(idNamespace), "ff39e039-0b3e-5eda-a5d7-078caa1badfa"; got != want {
		t.Errorf("namespace %s, want %s", got, want)
	}
	lr := &logspb.LogRecord{Attributes: []*commonpb.KeyValue{kv("subject", "c")}}
	data := logsRecord(t, lr, lr)
	if got := hex.EncodeToString(data); got != publishedRecordHex {
		t.Errorf("record bytes %s, want %s", got, publishedRecordHex)
	}
	if got, want := idName(data, 1), publishedDigest+"/1"; got != want {
		t.Errorf("id name %s, want %s", got, want)
	}
	wantIDs := []string{publishedID0, publishedID1}
	for i, want := range wantIDs {
		if got := EventID(data, i); got != want {
			t.Errorf("EventID(record, %d) = %s, want %s", i, got, want)
		}
	}
	// The converter gives the same ids, wherever the record is queued.
	for _, at := range []struct {
		loc   string
		index int
	}{{"ingest/data/01JBZ3M6Q8X2V4K7N9P0R5T1W3.batch", 3}, {"ingest/data/01JBZ3QXXR1N8D5C2F7H6K4M9P.batch", 0}} {
		rec := record(format.SignalLogs, data)
		rec.Location, rec.Index = at.loc, at.index
		evs, err := registry(t, Config{}).Convert(rec)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(t, evs); !reflect.DeepEqual(got, wantIDs) {
			t.Errorf("%s#%d: converted ids %v, want %v", at.loc, at.index, got, wantIDs)
		}
	}
}

func uuidV5String(u [16]byte) string { return string(appendUUID(nil, u)) }

// The README's conversion example is testdata/otlp/openmeter-api-calls.yaml
// (whose output the golden test pins), so the two cannot drift.
func TestREADMEExampleIsTheTestdataConfig(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(testdata, "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec := string(readme)
	i := strings.Index(sec, "## OpenTelemetry input")
	if i < 0 {
		t.Fatal(`README has no "## OpenTelemetry input" section`)
	}
	sec = sec[i:]
	j := strings.Index(sec, "```yaml\nconversion:\n")
	if j < 0 {
		t.Fatal("no ```yaml block starting with conversion: in the OpenTelemetry section")
	}
	block := sec[j+len("```yaml\n"):]
	block = block[:strings.Index(block, "```")]
	var doc struct {
		Conversion Config `yaml:"conversion"`
	}
	dec := yaml.NewDecoder(strings.NewReader(block))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("README example: %v\n%s", err, block)
	}
	if want := loadConfig(t, "openmeter-api-calls.yaml"); !reflect.DeepEqual(doc.Conversion, want) {
		t.Errorf("README example\n%+v\ndiffers from testdata/otlp/openmeter-api-calls.yaml\n%+v", doc.Conversion, want)
	}
}

// The two README/doc recipes: subject from a resource attribute, and a
// filter that keeps cumulative sums away from the meter.
func TestRecipesSubjectFromResourceAndDeltaOnly(t *testing.T) {
	var doc struct {
		Conversion Config `yaml:"conversion"`
	}
	// The README's flow-style snippets, merged.
	if err := yaml.Unmarshal([]byte(`conversion: {metrics: {subject: 'string(resource["tenant.id"])', filter: 'temporality != "cumulative"'}}`), &doc); err != nil {
		t.Fatal(err)
	}
	sum := func(temp metricspb.AggregationTemporality) *metricspb.Metric {
		return &metricspb.Metric{Name: "tokens", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{AggregationTemporality: temp, DataPoints: []*metricspb.NumberDataPoint{
			{TimeUnixNano: 5e18, Value: &metricspb.NumberDataPoint_AsInt{AsInt: 3}}}}}}
	}
	data, err := proto.Marshal(&colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		Resource:     &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("tenant.id", "acme")}},
		ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{sum(metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE), sum(metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA)}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	// With the defaults there is no subject: the record is rejected.
	if _, err := registry(t, Config{}).Convert(record(format.SignalMetrics, data)); err == nil || !strings.Contains(err.Error(), "metrics.subject") {
		t.Fatalf("default mapping: %v, want a subject error", err)
	}
	evs, err := registry(t, doc.Conversion).Convert(record(format.SignalMetrics, data))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || !strings.Contains(string(evs[0]), `"subject":"acme"`) || !strings.Contains(string(evs[0]), `"temporality":"delta"`) {
		t.Errorf("want only the delta point, subject acme: %s", evs)
	}
}
