package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/bucketq/bucketq/journal"
	"log/slog"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/convert/otlpconv"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/partition"
	"github.com/bucketq/bucketq/producer"
)

// partitionArg parses the --partition flag (value v) of fl, a command that
// acts on one partition's objects: not given is partition 0, whose names
// are the configured ones (given false). Given with an empty value it is
// an error, not "unset": an unset shell variable must not widen or move
// what the command acts on.
func partitionArg(cmd string, fl *config.Flags, v string) (p int, given bool, err error) {
	fl.Visit(func(f *flag.Flag) { given = given || f.Name == "partition" })
	if !given {
		return 0, false, nil
	}
	if v == "" {
		return 0, true, &config.Error{Msg: fmt.Sprintf("%s: --partition was given an empty value: want a partition number from 0 to %d, or leave the flag out", cmd, partition.MaxPartitions-1)}
	}
	p, err = strconv.Atoi(v)
	if err != nil || p < 0 || p >= partition.MaxPartitions {
		return 0, true, &config.Error{Msg: fmt.Sprintf("%s: --partition %q: want a partition number from 0 to %d (partition p ≥ 1 uses the configured prefix with suffix -000p)", cmd, v, partition.MaxPartitions-1)}
	}
	return p, true, nil
}

// producerConfig is the producer configuration of cfg for the queue whose
// batches go under dataPrefix (one partition's): the store's automatic
// cost cap and pipeline depth unless min_seal_interval is set.
func producerConfig(cfg *config.Config, dataPrefix string) producer.Config {
	return producer.Config{
		DataPrefix:       dataPrefix,
		FlushInterval:    cfg.FlushInterval,
		MinSealInterval:  minSealInterval(cfg),
		PipelineDepth:    producer.AutoPipelineDepth(cfg.ObjectStore != nil),
		FlushSizeBytes:   cfg.FlushSizeBytes,
		Compression:      cfg.Compression.String(),
		FormatVersion:    cfg.FormatVersion,
		MaxBufferedBytes: cfg.MaxBufferedBytes,
		GCGracePeriod:    cfg.GCGracePeriod,
	}
}

// partitionReg is the registerer for partition p's metrics: reg itself with
// one partition (today's metric names and labels exactly), else reg with
// the constant label partition="p" (bounded by the partition count).
func partitionReg(reg prometheus.Registerer, cfg *config.Config, p int) prometheus.Registerer {
	if cfg.Partitions <= 1 {
		return reg
	}
	return partition.PartitionRegisterer(reg, p)
}

// newProducer returns the producer of the process: with partitions: 1
// today's single producer, else a Spreader over one producer per partition.
func newProducer(bkt objstore.Bucket, store cas.Store, cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (partition.Producer, error) {
	mk := func(p int, st cas.Store) (partition.Producer, error) {
		pm := producer.NewMetrics(partitionReg(reg, cfg, p))
		l := cfg.Layout().Partition(p)
		q := manifest.NewQueue(st, l.Manifest, queueOptions(cfg, producer.QueueOptions(pm)))
		return producer.New(bkt, q, producerConfig(cfg, l.Data), pm, log.With("partition", p))
	}
	if cfg.Partitions <= 1 {
		return mk(0, store)
	}
	host, _ := os.Hostname()
	return partition.NewSpreader(partition.SpreaderConfig{Partitions: cfg.Partitions, Home: cfg.Partition, HomeKey: host, FailAfter: cfg.ReadinessFailureThreshold}, store, mk,
		func(from, to int, why string) {
			log.Warn("producer moved to another partition", "from", from, "to", to, "why", why)
		})
}

// newConsumerRun returns what runs the consumer side until ctx ends: with
// partitions: 1 today's single consumer.Run, else a lease manager running a
// consumer per partition it holds.
//
// The readiness function is /readyz's consumer check: with one partition
// the consumer holds the queue's lease (consumer.Ready); with several, at
// least one partition's consumer holds its lease (a process that holds none,
// a standby while others hold every partition, is not ready).
func newConsumerRun(bkt objstore.Bucket, store cas.Store, cfg *config.Config, conv convert.Converter, oc *otlpconv.Converters, snk sink.Sink, reg prometheus.Registerer, log *slog.Logger) (func(context.Context) error, func() error, error) {
	mk := func(p int) (*consumer.Consumer, error) {
		preg := partitionReg(reg, cfg, p)
		cm := consumer.NewMetrics(preg)
		exportConverterMetrics(cm, oc)
		l := cfg.Layout().Partition(p)
		cc := consumerConfig(cfg)
		cc.DataPrefix, cc.DeadLetterPrefix = l.Data, l.DeadLetter
		if cfg.JournalRetention > 0 {
			// Each partition journals under its own prefix (RFC 0005).
			var err error
			if cc.Journal, err = journal.New(bkt, journal.Config{Prefix: partition.Suffix(cfg.JournalPrefix, p), Retention: cfg.JournalRetention}, journal.NewMetrics(preg)); err != nil {
				return nil, err
			}
		}
		return consumer.New(bkt, manifest.NewQueue(store, l.Manifest, queueOptions(cfg, consumer.QueueOptions(cm))), conv, snk, cc, cm, log.With("part", "consumer", "partition", strconv.Itoa(p)))
	}
	if cfg.Partitions <= 1 {
		c, err := mk(0)
		if err != nil {
			return nil, nil, err
		}
		return c.Run, c.Ready, nil
	}
	// Build every partition's consumer now, so a bad config fails at start.
	cons := make([]*consumer.Consumer, cfg.Partitions)
	for p := range cons {
		var err error
		if cons[p], err = mk(p); err != nil {
			return nil, nil, err
		}
	}
	m, err := partition.NewManager(store, partition.ManagerConfig{Partitions: cfg.Partitions, Table: partition.LeasePath(cfg.ManifestPath), Timeout: cfg.LeaseTimeout},
		func(ctx context.Context, p int) error { return cons[p].Run(ctx) }, partition.NewMetrics(reg), log)
	if err != nil {
		return nil, nil, err
	}
	anyReady := func() error {
		var first error
		for _, c := range cons {
			err := c.Ready()
			if err == nil {
				return nil
			}
			if first == nil {
				first = err
			}
		}
		return first
	}
	return m.Run, anyReady, nil
}
