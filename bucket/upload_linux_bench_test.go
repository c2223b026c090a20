package bucket_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/internal/keptdir"
)

// BenchmarkAckCycleVsLogAppend prices a directory bucket's durable ack
// against a log-file queue's, on this machine's disk in the same run: one
// op is one bucketq ack cycle (a 30 KB batch upload and a 30 KB
// replacement of another object, standing in for the manifest write: two
// new files, two renames, four fsyncs) and, alternating, one append of the
// same 60 KB into a preallocated file with one fdatasync (what a bbolt or
// write-ahead-log queue pays per ack, as the OTel Collector's file_storage
// does). x-log-append is the ack cycle's wall time over the append's;
// ack-cpu-µs and log-cpu-µs the process CPU of each (BENCHMARKS.md §2e).
func BenchmarkAckCycleVsLogAppend(b *testing.B) {
	dir := keptdir.New(b)
	bkt, err := bucket.NewDurableFilesystem(filepath.Join(dir, "bucket"))
	if err != nil {
		b.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	data := bytes.Repeat([]byte("0123456789abcdef"), 30<<10/16)
	const logSize = 256 << 20
	if err := log.Truncate(logSize); err != nil {
		b.Fatal(err)
	}
	if err := log.Sync(); err != nil {
		b.Fatal(err)
	}
	var ackWall, logWall, ackCPU, logCPU time.Duration
	var off int64
	for i := 0; b.Loop(); i++ {
		t0, c0 := time.Now(), cpu()
		if err := bkt.Upload(context.Background(), fmt.Sprintf("data/%08d.batch", i), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		if err := bkt.Upload(context.Background(), "manifest", bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		t1, c1 := time.Now(), cpu()
		for range 2 {
			if off+int64(len(data)) > logSize {
				off = 0
			}
			if _, err := log.WriteAt(data, off); err != nil {
				b.Fatal(err)
			}
			off += int64(len(data))
		}
		if err := syscall.Fdatasync(int(log.Fd())); err != nil {
			b.Fatal(err)
		}
		ackWall += t1.Sub(t0)
		ackCPU += c1 - c0
		logWall += time.Since(t1)
		logCPU += cpu() - c1
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64(ackWall/n)/1e3, "ack-µs")
	b.ReportMetric(float64(logWall/n)/1e3, "log-µs")
	b.ReportMetric(float64(ackWall)/float64(logWall), "x-log-append")
	b.ReportMetric(float64(ackCPU/n)/1e3, "ack-cpu-µs")
	b.ReportMetric(float64(logCPU/n)/1e3, "log-cpu-µs")
}

// cpu is this process's user+system CPU time so far.
func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
