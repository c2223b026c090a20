package format_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/benchpair"
)

// The benchmarks run the codec and a baseline in the same loop, one after
// the other in every iteration (alternating which goes first), so both see
// the same CPU, cache and GC conditions. The standard ns/op, MB/s, B/op and
// allocs/op columns are the codec's alone (overridden with ReportMetric).
// Both sides are also timed in CPU time of the benchmark's locked OS thread
// ("cpu-ns/op", "raw-cpu-ns/op"), which a busy machine does not inflate the
// way it inflates wall time; the ratio codec/baseline of CPU time is
// "x-raw-zstd" (zstd) or "x-memcpy" (none). The garbage collector runs
// between iterations, not inside them. MB/s counts the uncompressed
// record block. zstd runs with concurrency 1, on the calling goroutine, so
// its work is on the locked thread.
//
//	go test ./format -run '^$' -bench . -benchmem

var benchSizes = []int{1_000, 10_000, 100_000}

// Same options as format's own codecs: level 3 (SpeedDefault), frame CRC on,
// one encoder. The decoder checks the checksum like format's does.
var rawZstdCodecs = sync.OnceValues(func() (*zstd.Encoder, *zstd.Decoder) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderCRC(true),
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true))
	if err != nil {
		panic(err)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.IgnoreChecksum(false),
		zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		panic(err)
	}
	return enc, dec
})

var (
	eventTypes = []string{"api-calls", "llm-tokens", "storage", "compute-seconds"}
	methods    = []string{"GET", "POST", "PUT", "DELETE"}
	routes     = []string{"/v1/orders", "/v1/orders/{id}", "/v1/customers/{id}/invoices", "/v2/search", "/v1/health"}
	models     = []string{"gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "llama-3.1-70b"}
	regions    = []string{"eu-west-1", "us-east-1", "ap-southeast-2"}
	sources    = []string{"gateway-eu-1", "gateway-eu-2", "gateway-us-1", "billing-agent", "llm-proxy"}
)

const ulidAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// cloudEvents returns n CloudEvents JSON records of about 250 bytes with
// varied ids, subjects, timestamps and numbers, the same for every run.
func cloudEvents(n int) [][]byte {
	r := rand.New(rand.NewPCG(20250601, uint64(n)))
	recs := make([][]byte, n)
	id := make([]byte, 26)
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := range recs {
		for j := range id {
			id[j] = ulidAlphabet[r.IntN(len(ulidAlphabet))]
		}
		ts := time.UnixMilli(t0 + int64(i)*37 + r.Int64N(1000)).UTC().Format("2006-01-02T15:04:05.000Z")
		typ := eventTypes[r.IntN(len(eventTypes))]
		var data string
		switch typ {
		case "api-calls":
			data = fmt.Sprintf(`{"method":"%s","route":"%s","status":%d,"duration_ms":%d,"region":"%s"}`,
				methods[r.IntN(len(methods))], routes[r.IntN(len(routes))], []int{200, 200, 200, 201, 404, 500}[r.IntN(6)], r.IntN(2000), regions[r.IntN(len(regions))])
		case "llm-tokens":
			data = fmt.Sprintf(`{"model":"%s","type":"%s","tokens":%d,"provider":"p%d"}`,
				models[r.IntN(len(models))], []string{"input", "output"}[r.IntN(2)], r.IntN(20000), r.IntN(4))
		case "storage":
			data = fmt.Sprintf(`{"bucket":"tenant-%04d-assets","bytes":%d,"region":"%s","tier":"standard"}`,
				r.IntN(5000), r.Int64N(1<<34), regions[r.IntN(len(regions))])
		default:
			data = fmt.Sprintf(`{"instance":"i-%016x","cpu_seconds":%.3f,"region":"%s"}`,
				r.Uint64(), r.Float64()*3600, regions[r.IntN(len(regions))])
		}
		recs[i] = fmt.Appendf(nil, `{"specversion":"1.0","type":"%s","id":"%s","source":"%s","subject":"customer-%d","time":"%s","data":%s}`,
			typ, id, sources[r.IntN(len(sources))], r.IntN(100_000), ts, data)
	}
	return recs
}

func recordBlock(recs [][]byte) []byte {
	size := 0
	for _, r := range recs {
		size += 4 + len(r)
	}
	b := make([]byte, 0, size)
	for _, r := range recs {
		b = append(b, byte(len(r)), byte(len(r)>>8), byte(len(r)>>16), byte(len(r)>>24))
		b = append(b, r...)
	}
	return b
}

// pairBench times codec and baseline alternately (internal/benchpair) and
// reports the codec's figures plus the baseline's time and the ratio under
// ratioUnit.
func pairBench(b *testing.B, blockBytes int, ratioUnit string, codec, baseline func()) {
	b.Helper()
	r := benchpair.Run(b, blockBytes, codec, baseline)
	n := float64(r.N)
	b.ReportMetric(float64(r.Wall.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(blockBytes)*n/r.Wall.Seconds()/1e6, "MB/s")
	b.ReportMetric(r.AllocBytes, "B/op")
	b.ReportMetric(r.Allocs, "allocs/op")
	b.ReportMetric(float64(r.CPU.Nanoseconds())/n, "cpu-ns/op")
	b.ReportMetric(float64(r.BaseCPU.Nanoseconds())/n, "raw-cpu-ns/op")
	if x := r.Ratio(); x > 0 {
		b.ReportMetric(x, ratioUnit)
	}
}

var sink []byte

// BenchmarkEncode: Encoder.Append of every record + Finish, reusing one
// Encoder through Reset as a producer does, against raw zstd EncodeAll of
// the same record block (zstd) or one copy of the block (none).
func BenchmarkEncode(b *testing.B) {
	for _, c := range compressions {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/records=%d", c, n), func(b *testing.B) {
				recs := cloudEvents(n)
				blk := recordBlock(recs)
				enc := format.NewEncoder(c)
				codec := func() {
					enc.Reset()
					for _, r := range recs {
						enc.Append(r)
					}
					out, err := enc.Finish()
					if err != nil {
						b.Fatal(err)
					}
					sink = out
				}
				if c == format.CompressionZstd {
					raw, _ := rawZstdCodecs()
					// Same destination sizing as Finish, so growth of the output is
					// not counted against the baseline.
					pairBench(b, len(blk), "x-raw-zstd", codec, func() { sink = raw.EncodeAll(blk, make([]byte, 0, len(blk)/2+format.FooterSizeV2)) })
				} else {
					dst := make([]byte, len(blk))
					pairBench(b, len(blk), "x-memcpy", codec, func() { copy(dst, blk) })
				}
			})
		}
	}
}

// BenchmarkDecode: DecodeBatch of a whole batch file against raw zstd
// DecodeAll of the same frame (zstd) or one copy of the block (none).
func BenchmarkDecode(b *testing.B) {
	for _, c := range compressions {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/records=%d", c, n), func(b *testing.B) {
				recs := cloudEvents(n)
				blk := recordBlock(recs)
				file, err := format.EncodeBatch(c, recs)
				if err != nil {
					b.Fatal(err)
				}
				codec := func() {
					batch, err := format.DecodeBatch(file)
					if err != nil || len(batch.Records) != n {
						b.Fatalf("DecodeBatch: %v", err)
					}
				}
				if c == format.CompressionZstd {
					_, raw := rawZstdCodecs()
					frame := file[:len(file)-format.FooterSizeV2]
					pairBench(b, len(blk), "x-raw-zstd", codec, func() {
						out, err := raw.DecodeAll(frame, nil)
						if err != nil || len(out) != len(blk) {
							b.Fatalf("raw DecodeAll: %v", err)
						}
						sink = out
					})
				} else {
					dst := make([]byte, len(blk))
					pairBench(b, len(blk), "x-memcpy", codec, func() { copy(dst, blk) })
				}
			})
		}
	}
}

// TestBenchRecordsRealistic keeps the benchmark input honest: about 250
// bytes per record, all different, valid-looking CloudEvents.
func TestBenchRecordsRealistic(t *testing.T) {
	recs := cloudEvents(1000)
	total, seen := 0, map[string]bool{}
	for _, r := range recs {
		total += len(r)
		seen[string(r)] = true
	}
	avg := total / len(recs)
	if avg < 200 || avg > 300 {
		t.Fatalf("average record %d bytes, want about 250", avg)
	}
	if len(seen) != len(recs) {
		t.Fatalf("%d distinct records of %d", len(seen), len(recs))
	}
	if again := cloudEvents(1000); string(again[999]) != string(recs[999]) {
		t.Fatalf("records are not deterministic")
	}
}
