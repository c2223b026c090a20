// Package otlpconv turns OTLP records (ExportLogs/Metrics/TraceServiceRequest
// protobuf, as stored by ingest/otlp) into CloudEvents for the metering API,
// using declarative mappings written as CEL expressions and compiled once.
//
// # Events
//
// One event per log record, per metric data point (sum, gauge, histogram,
// exponential histogram, summary) and per span. Each event is a structured
// JSON CloudEvent 1.0 with specversion, id, source, type, subject, time and,
// when data is not empty, datacontenttype "application/json" and data.
//
// # Ids
//
// By default the id is derived from the record's content: the UUIDv5
// (RFC 9562) of "<sha256 of the record, lower-case hex>/<item index>" in
// the namespace UUIDv5(DNS, "bucketq.otlp"), where the record is the
// Export request's protobuf bytes as stored (hashed once per record) and
// the item index counts the log records / data points / spans of the
// request from 0 in message order (resource, scope, metric, point),
// including items a filter drops. EventID computes it. The id does not
// depend on where the record is queued, so the metering API's (id, source)
// dedup removes redelivery and replay, and also a client's retried export
// whose first attempt was in fact stored: ingest/otlp stores every request
// re-marshaled deterministically, so both copies are the same bytes and
// give the same ids. Two byte-identical requests are therefore one usage;
// a client that sends the same items twice as separate usage (no
// timestamps, same attributes) must map `id` from a unique attribute (for
// example `attributes["event.id"]`). A mapped `id` always wins.
//
// # Errors
//
// Items are converted one by one. An item that cannot be mapped (an
// expression that fails or gives the wrong type, an empty or absent
// id/type/source/subject, a time that is not a timestamp or RFC 3339
// string, a NaN or infinite number in a mapped data field, a span ending
// before it starts) is reported by ConvertItems as a convert.ItemError
// naming the item position ("resource 0 scope 1 log record 5"), the config
// field and the expression; the other items still give their events, with
// the ids they have when every item converts (a failed item keeps its
// index, so no id shifts). The consumer delivers those and dead-letters
// the record once, listing the failed items (RFC 0006); `bucketq dead-letters redrive` converts it
// again and sends only the failed items' events. Only an undecodable
// protobuf fails the whole record. Convert stays all or nothing: it
// returns the first failed item's error, naming the record too.
// Converting the same record bytes again, wherever they are queued, gives
// the same ids. Items a `filter` rejects are skipped on purpose, not
// errors.
//
// Metric data points with no value are skipped, not errors: a point with
// the OTLP NoRecordedValue flag (for example a Prometheus staleness marker),
// and a sum or gauge point whose number is NaN or infinite, gives no event
// and is counted in Converters.NoValuePoints (exported by the bucketq
// command as buffer_points_skipped_no_value); the rest of the request is
// converted and later items keep their ids. NaN and infinite numbers are
// not valid JSON: in the built-in default data (a NaN attribute, the NaN
// quantiles of an empty summary) they are written as null; in a mapped
// data field they reject the item, since mapped fields are what a meter
// aggregates.
//
// # Metering with the defaults: subject and temporality
//
// The default subject needs a `subject` or `customer.id` attribute on the
// item or its resource. Plain SDK or Collector telemetry has neither, so
// with the defaults every such item is dead-lettered (one dead letter per
// export request, listing its items; none silently dropped). Set the attribute where the
// telemetry is made (for example OTEL_RESOURCE_ATTRIBUTES=customer.id=acme),
// or map subject from an attribute you have:
//
//	conversion:
//	  metrics:
//	    subject: string(resource["tenant.id"])
//
// OTel SDKs export sums as cumulative by default: each export repeats the
// running total since start_time. A SUM meter over such events bills the
// total again on every export. Meter delta sums instead (set the exporter's
// temporality preference to delta, e.g.
// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta), or keep
// cumulative points away from SUM meters with a filter:
//
//	conversion:
//	  metrics:
//	    filter: temporality != "cumulative"
//
// (or use a LATEST/MAX meter on the cumulative value).
//
// # Configuration
//
// Config has one section per signal (logs, metrics, traces), each with:
//
//	filter:  bool expression; items where it is false give no event
//	id, type, source, subject, time: expressions for the event attributes
//	data:    map of data field -> expression (replaces the default data)
//	events:  list of rules {match: bool expression, + any of the fields
//	         above}; the first rule whose match is true applies, fields it
//	         leaves empty come from the section; a match that fails on an
//	         absent attribute counts as false.
//
// A data field whose expression fails only because a map key is absent
// (`attributes.zone` on a record without zone) or gives optional.none() is
// left out of data; any other failure rejects the item. type, source,
// subject and id must give a non-empty string; time a timestamp or an
// RFC 3339 string (epoch 0 falls back to the item's own time).
//
// Defaults for fields left empty:
//
//	type     logs "otel.log"; metrics the metric name (`name`); traces "otel.span"
//	source   string(resource[?"service.name"].orValue("otlp"))
//	subject  the first present of attributes "subject", "customer.id", then
//	         resource "subject", "customer.id"; none present rejects the item
//	time     `time` (below)
//	id       the derived UUIDv5
//	data     logs: attributes, body, severity_text, severity_number,
//	         event_name, trace_id, span_id (empty ones left out);
//	         metrics: name, kind, unit, temporality, monotonic (sums),
//	         start_time, end_time (the point's time; both RFC 3339,
//	         left out when 0), attributes and the `point` fields;
//	         traces: name, kind, duration_ms, status_code, status_message,
//	         trace_id, span_id, parent_span_id, start_time, end_time, attributes.
//
// # Variables
//
// Every signal:
//
//	resource        map   resource attributes
//	scope           map   {name, version, attributes} of the instrumentation scope
//	attributes      map   the item's attributes (log record, data point, span)
//	time            timestamp  logs: time, else observed time; metrics: point
//	                time; traces: start time; else the ingestion time
//	ingestion_time  timestamp  when the producer accepted the batch
//	location        string     batch object name; record_index, item_index int
//
// Logs: body (string, int, double, bool, bytes, list or map), severity_text,
// severity_number (int), observed_time, event_name, trace_id and span_id
// (lower-case hex, "" when absent), flags.
//
// Metrics: name, description, unit, kind ("sum", "gauge", "histogram",
// "exponential_histogram", "summary"), temporality ("delta", "cumulative",
// "unspecified"; "" for gauge and summary), monotonic (bool), value (double:
// the number of a sum or gauge, the sum of the others), count (int: of
// histograms and summaries), sum (double), start_time, end_time (the
// point's time_unix_nano; `time` falls back to the ingestion time when it is
// 0, end_time does not), flags, and point
// (map): sum/gauge {value (int or double as sent)}; histogram {count, sum,
// min, max, bucket_counts, explicit_bounds}; exponential histogram {count,
// sum, min, max, scale, zero_count, zero_threshold, positive and negative
// {offset, bucket_counts}}; summary {count, sum, quantile_values [{quantile,
// value}]} (sum/min/max only when sent).
//
// Traces: name, kind ("unspecified", "internal", "server", "client",
// "producer", "consumer"), trace_id, span_id, parent_span_id, trace_state,
// start_time, end_time, duration (CEL duration), duration_ms (double),
// status_code ("unset", "ok", "error"), status_message, flags.
//
// Attribute values are strings, bools, ints, doubles, bytes, lists and maps
// as sent. Keys with dots need index syntax: attributes["customer.id"];
// `attributes[?"k"].orValue(x)` (optional syntax) gives a default. The CEL
// strings, math and encoders extensions are enabled. In data, timestamps are
// written as RFC 3339 strings, durations as Go duration strings ("1.5s"),
// bytes as base64.
//
// # Example: the OpenMeter collector's otel_log "api-calls" mapping
//
//	conversion:
//	  logs:
//	    type: '"api-calls"'
//	    source: '"otlp-log"'
//	    time: attributes.time
//	    subject: attributes.subject
//	    data:
//	      method: attributes.method
//	      path: attributes.path
//	      region: attributes.region
//	      zone: attributes.zone
//	      duration_ms: attributes.duration
//
// (testdata/otlp/openmeter-api-calls.yaml; its output is
// testdata/otlp/golden/logs-openmeter-api-calls.events.json.)
package otlpconv
