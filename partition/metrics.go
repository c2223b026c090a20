package partition

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketq/bucketq/internal/promx"
)

// Metrics are the partition manager's collectors (bounded: no labels).
// Per-partition metrics of the producers and consumers come from their own
// collectors, registered with a constant "partition" label (see
// PartitionRegisterer).
type Metrics struct {
	Held           prometheus.Gauge   // partition_leases_held
	Running        prometheus.Gauge   // partition_runners
	Members        prometheus.Gauge   // partition_lease_members
	LeaseChanges   prometheus.Counter // partition_lease_changes
	TableConflicts prometheus.Counter // partition_lease_table_conflicts
	TableErrors    prometheus.Counter // partition_lease_table_errors
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	g := func(name, help string) prometheus.Gauge {
		return promx.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
	}
	c := func(name, help string) prometheus.Counter {
		return promx.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
	}
	return &Metrics{
		Held:           g("partition_leases_held", "Partitions this consumer holds in the lease table."),
		Running:        g("partition_runners", "Partition consumers running in this process."),
		Members:        g("partition_lease_members", "Live consumers in the lease table, as last written."),
		LeaseChanges:   c("partition_lease_changes", "Times the set of partitions this consumer holds changed."),
		TableConflicts: c("partition_lease_table_conflicts", "Lease table writes refused because another consumer wrote first (retried)."),
		TableErrors:    c("partition_lease_table_errors", "Failed lease table updates (retried), damaged lease tables replaced, and tables listing more partitions than this consumer serves."),
	}
}

// PartitionRegisterer returns reg wrapped to add the label partition=p to
// every collector registered through it (nil reg: nil), for one
// partition's producer or consumer metrics. Cardinality is bounded by the
// partition count.
func PartitionRegisterer(reg prometheus.Registerer, p int) prometheus.Registerer {
	if reg == nil {
		return nil
	}
	return prometheus.WrapRegistererWith(prometheus.Labels{"partition": itoa(p)}, reg)
}
