package otlpconv

// Config is the OTLP → CloudEvents mapping, one section per signal. It is
// YAML-tagged to live under the `conversion:` key of the bucketq config.
// The zero value converts every signal with the documented defaults.
type Config struct {
	Logs    Signal `yaml:"logs"`
	Metrics Signal `yaml:"metrics"`
	Traces  Signal `yaml:"traces"`
}

// Signal maps one signal's items (log records, data points or spans).
type Signal struct {
	// Filter, when set, is a CEL bool expression: items for which it is
	// false are not turned into events (deliberately, not an error). Use it
	// to keep non-billing telemetry out of the metering API.
	Filter string `yaml:"filter,omitempty"`
	// Mapping is the default mapping of the signal (fields inline).
	Mapping `yaml:",inline"`
	// Events are per-event-type mappings: the first rule whose Match is
	// true applies; fields it leaves empty are taken from the signal's
	// Mapping (Data is replaced as a whole when the rule sets it).
	Events []Rule `yaml:"events,omitempty"`
}

// Rule is a mapping applied to the items its Match expression selects.
type Rule struct {
	Match   string `yaml:"match"`
	Mapping `yaml:",inline"`
}

// Mapping gives the CloudEvent attributes and data as CEL expressions.
// Empty fields take the signal's defaults (see the package documentation).
type Mapping struct {
	ID      string `yaml:"id,omitempty"`      // string; default: UUIDv5 of the record's SHA-256 and the item index (EventID)
	Type    string `yaml:"type,omitempty"`    // string
	Source  string `yaml:"source,omitempty"`  // string
	Subject string `yaml:"subject,omitempty"` // string, must not be empty
	Time    string `yaml:"time,omitempty"`    // timestamp, or RFC 3339 string
	// Data maps each data field to an expression (any JSON-representable
	// value). Nil means the signal's default data.
	Data map[string]string `yaml:"data,omitempty"`
}

// Default CEL expressions shared by the signals.
const (
	// DefaultSource is the service.name resource attribute, else "otlp".
	DefaultSource = `string(resource[?"service.name"].orValue("otlp"))`
	// DefaultSubject is the first present of the record attributes
	// "subject" and "customer.id", then the same resource attributes;
	// none present gives "" and so the record is rejected.
	DefaultSubject = `string(attributes[?"subject"].or(attributes[?"customer.id"]).or(resource[?"subject"]).or(resource[?"customer.id"]).orValue(""))`
	// DefaultTime is the item's own time (see the variables).
	DefaultTime = `time`
	// DefaultLogType, DefaultMetricType and DefaultSpanType are the event
	// types: logs "otel.log", metrics the metric name, spans "otel.span".
	DefaultLogType    = `"otel.log"`
	DefaultMetricType = `name`
	DefaultSpanType   = `"otel.span"`
)

func defaults(m Mapping, typ string) Mapping {
	if m.Type == "" {
		m.Type = typ
	}
	if m.Source == "" {
		m.Source = DefaultSource
	}
	if m.Subject == "" {
		m.Subject = DefaultSubject
	}
	if m.Time == "" {
		m.Time = DefaultTime
	}
	return m
}
