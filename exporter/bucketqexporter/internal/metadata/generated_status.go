// Package metadata holds the component type and stability levels of the
// bucketq exporter, in the shape cmd/mdatagen generates from metadata.yaml
// (written by hand; keep the two in step).
package metadata

import (
	"go.opentelemetry.io/collector/component"
)

var (
	Type      = component.MustNewType("bucketq")
	ScopeName = "github.com/bucketq/bucketq/exporter/bucketqexporter"
)

const (
	TracesStability  = component.StabilityLevelAlpha
	MetricsStability = component.StabilityLevelAlpha
	LogsStability    = component.StabilityLevelAlpha
)
