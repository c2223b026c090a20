package bucketqexporter

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/bucketq/bucketq/producer"

	"github.com/bucketq/bucketq/exporter/bucketqexporter/internal/metadata"
)

// The producer's Prometheus metrics reach the collector's own telemetry
// (component.TelemetrySettings.MeterProvider) through a bridge: the
// producer counts into a private prometheus.Registry, and the exporter
// reports it with OTel instruments.
//
//   - Counters and gauges become Float64ObservableCounter and
//     Float64ObservableGauge instruments, fed by one callback that gathers
//     the registry each time the collector collects its telemetry.
//     Prometheus labels become attributes (buffer_manifest_writes{role}).
//   - Histograms: the OTel metric API has no observable histogram, and
//     reporting only _count and _sum would drop the distribution an
//     operator wants (ack latency percentiles). So each prometheus.Histogram
//     field of producer.Metrics is replaced, before the producer is
//     created, by a tee that records every observation in the Prometheus
//     histogram and in a synchronous Float64Histogram with the same bucket
//     boundaries: the same distribution, observation by observation. A
//     synchronous instrument cannot be unregistered; once the producer is
//     closed nothing records into it, so its cumulative value just stays.
//
// Names are the Prometheus name under "otelcol_bucketq_": the collector's
// own component metrics carry the "otelcol_" prefix in their instrument
// names (mdatagen writes it into the generated code, e.g.
// otelcol_exporter_sent_log_records), and its default Prometheus reader
// adds no prefix, unit or type suffix, so an operator scraping :8888 sees
// otelcol_bucketq_batch_sent next to otelcol_exporter_sent_log_records.
const telemetryPrefix = "otelcol_bucketq_"

// metricUnits are the UCUM units of the producer's metrics (mdatagen
// requires one per metric); a name missing here gets its unit from its
// suffix (_seconds, _bytes) or none.
var metricUnits = map[string]string{
	"batch_created":                    "{batch}",
	"batch_sent":                       "{batch}",
	"producer_batch_bytes":             "By",
	"producer_batch_records":           "{record}",
	"producer_upload_failures":         "{upload}",
	"producer_commit_failures":         "{commit}",
	"producer_reuploads":               "{batch}",
	"producer_append_duration_seconds": "s",
	"producer_backpressure":            "{append}",
	"producer_buffered_bytes":          "By",
	"producer_commit_group_entries":    "{batch}",
	"buffer_manifest_writes":           "{write}",
	"buffer_manifest_conflicts":        "{conflict}",
}

func metricUnit(promName string) string {
	if u, ok := metricUnits[promName]; ok {
		return u
	}
	switch {
	case strings.HasSuffix(promName, "_seconds"):
		return "s"
	case strings.HasSuffix(promName, "_bytes"):
		return "By"
	}
	return ""
}

// signalKey is the attribute the collector adds to an exporter's
// telemetry naming its pipeline's signal (otelcol.signal; the constant is
// in the collector's internal/telemetry package).
const signalKey = "otelcol.signal"

// attributeDropper is what the collector's MeterProvider wrapper
// (service/internal/componentattribute) implements; its own shared
// components (the otlp receiver, memory_limiter) drop the signal through
// internal/telemetry.DropInjectedAttributes, which a component outside
// the collector module cannot import.
type attributeDropper interface {
	DropInjectedAttributes(droppedAttrs ...string) metric.MeterProvider
}

// producerMeter is the meter of the producer shared by the exporters of
// one configuration. It is created from the settings of whichever signal's
// exporter starts first, without that signal: the producer serves all
// three, and its metrics must not look like the logs (or traces) pipeline's.
func producerMeter(mp metric.MeterProvider) metric.Meter {
	if d, ok := mp.(attributeDropper); ok {
		mp = d.DropInjectedAttributes(signalKey)
	}
	return mp.Meter(metadata.ScopeName)
}

// bridgeMetrics creates the producer's metrics on a private registry and
// their OTel instruments on meter. Pass the returned metrics to
// producer.QueueOptions and producer.New; unregister the returned
// registration when the producer is closed. A nil meter bridges nothing.
func bridgeMetrics(meter metric.Meter) (*producer.Metrics, metric.Registration, error) {
	reg := prometheus.NewRegistry()
	m := producer.NewMetrics(reg)
	if meter == nil {
		return m, nil, nil
	}
	teed, err := teeHistograms(m, meter)
	if err != nil {
		return nil, nil, err
	}
	families, err := reg.Gather()
	if err != nil {
		return nil, nil, err
	}
	// Every metric of the producer is created by NewMetrics (the vectors'
	// children too: WithLabelValues("producer")), so the registry already
	// has every family it will ever have: instruments are made from it
	// once, and the callback observes only these.
	instruments := map[string]metric.Float64Observable{}
	var observables []metric.Observable
	for _, f := range families {
		name := f.GetName()
		desc, unit := metric.WithDescription(f.GetHelp()), metric.WithUnit(metricUnit(name))
		var inst metric.Float64Observable
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			inst, err = meter.Float64ObservableCounter(telemetryPrefix+name, desc, unit)
		case dto.MetricType_GAUGE:
			inst, err = meter.Float64ObservableGauge(telemetryPrefix+name, desc, unit)
		case dto.MetricType_HISTOGRAM:
			if !teed[name] {
				err = fmt.Errorf("histogram %s is not a prometheus.Histogram field of producer.Metrics", name)
			}
		default:
			err = fmt.Errorf("metric %s: Prometheus type %s has no bridge", name, f.GetType())
		}
		if err != nil {
			return nil, nil, fmt.Errorf("bucketq: telemetry: %w", err)
		}
		if inst != nil {
			instruments[name] = inst
			observables = append(observables, inst)
		}
	}
	callback := func(_ context.Context, o metric.Observer) error {
		families, err := reg.Gather() // partial results come with an error
		for _, f := range families {
			inst := instruments[f.GetName()]
			if inst == nil {
				continue
			}
			for _, pm := range f.GetMetric() {
				var v float64
				switch f.GetType() {
				case dto.MetricType_COUNTER:
					v = pm.GetCounter().GetValue()
				case dto.MetricType_GAUGE:
					v = pm.GetGauge().GetValue()
				default:
					continue
				}
				o.ObserveFloat64(inst, v, metric.WithAttributeSet(labelSet(pm.GetLabel())))
			}
		}
		return err
	}
	r, err := meter.RegisterCallback(callback, observables...)
	if err != nil {
		return nil, nil, fmt.Errorf("bucketq: telemetry: %w", err)
	}
	return m, r, nil
}

func labelSet(labels []*dto.LabelPair) attribute.Set {
	kvs := make([]attribute.KeyValue, len(labels))
	for i, l := range labels {
		kvs[i] = attribute.String(l.GetName(), l.GetValue())
	}
	return attribute.NewSet(kvs...)
}

// teeHistogram records every observation in the producer's Prometheus
// histogram and in an OTel histogram.
type teeHistogram struct {
	prometheus.Histogram
	otel metric.Float64Histogram
}

func (h teeHistogram) Observe(v float64) {
	h.Histogram.Observe(v)
	h.otel.Record(context.Background(), v)
}

// teeHistograms replaces each prometheus.Histogram field of m by a
// teeHistogram into a Float64Histogram of the same name, help and
// buckets, and returns the Prometheus names it replaced.
func teeHistograms(m *producer.Metrics, meter metric.Meter) (map[string]bool, error) {
	histType := reflect.TypeFor[prometheus.Histogram]()
	v := reflect.ValueOf(m).Elem()
	teed := map[string]bool{}
	for i := range v.NumField() {
		field := v.Field(i)
		if field.Type() != histType || field.IsNil() {
			continue
		}
		h := field.Interface().(prometheus.Histogram)
		f, err := describe(h)
		if err != nil {
			return nil, fmt.Errorf("bucketq: telemetry: producer.Metrics.%s: %w", v.Type().Field(i).Name, err)
		}
		var bounds []float64
		for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
		}
		oh, err := meter.Float64Histogram(telemetryPrefix+f.GetName(),
			metric.WithDescription(f.GetHelp()), metric.WithUnit(metricUnit(f.GetName())),
			metric.WithExplicitBucketBoundaries(bounds...))
		if err != nil {
			return nil, fmt.Errorf("bucketq: telemetry: %w", err)
		}
		field.Set(reflect.ValueOf(prometheus.Histogram(teeHistogram{Histogram: h, otel: oh})))
		teed[f.GetName()] = true
	}
	return teed, nil
}

// describe returns the family of one unlabelled collector: its name, help
// and (for a histogram) its bucket boundaries.
func describe(c prometheus.Collector) (*dto.MetricFamily, error) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	fs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	if len(fs) != 1 || len(fs[0].GetMetric()) != 1 {
		return nil, errors.New("not a single unlabelled metric")
	}
	return fs[0], nil
}
