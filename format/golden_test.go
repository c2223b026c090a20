package format_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/bucketq/bucketq/format"
)

// update regenerates the golden batch files: go test ./format -run TestGolden -update
// The files are committed; regenerate only on a deliberate format change
// and update testdata/README.md with them.
var update = flag.Bool("update", false, "rewrite the golden files in ../testdata/batches")

const goldenDir = "../testdata/batches"

type golden struct {
	file        string
	compression format.Compression
	records     []string
	footerHex   string // as written in testdata/README.md
	version     uint16 // 0 means 1
}

func (g golden) ver() uint16 {
	if g.version == 0 {
		return format.BatchVersion1
	}
	return g.version
}

func (g golden) encode() ([]byte, error) {
	e := format.NewEncoderVersion(g.compression, g.ver())
	for _, r := range g.recordBytes() {
		e.Append(r)
	}
	return e.Finish()
}

var goldens = []golden{
	{
		file:        "none-v2.batch",
		version:     2,
		compression: format.CompressionNone,
		records: []string{
			`{"specversion":"1.0","type":"api-calls","id":"evt-0201","source":"gateway-eu","subject":"customer-1","time":"2025-01-01T00:00:00Z","data":{"method":"GET","path":"/v1/orders","duration_ms":7}}`,
			`{"specversion":"1.0","type":"api-calls","id":"evt-0202","source":"gateway-eu","subject":"customer-3","time":"2025-01-01T00:00:01Z","data":{"method":"PUT","path":"/v1/orders/9","duration_ms":21}}`,
		},
		footerHex: "00 02 00 00 00 ca 97 1e 9d 02 00",
	},
	{
		file:        "empty-v2.batch",
		version:     2,
		compression: format.CompressionNone,
		records:     []string{},
		footerHex:   "00 00 00 00 00 35 76 72 45 02 00",
	},
	{
		file:        "none.batch",
		compression: format.CompressionNone,
		records: []string{
			`{"specversion":"1.0","type":"api-calls","id":"evt-0001","source":"gateway-eu","subject":"customer-1","time":"2025-01-01T00:00:00Z","data":{"method":"GET","path":"/v1/orders","duration_ms":12}}`,
			`{"specversion":"1.0","type":"api-calls","id":"evt-0002","source":"gateway-eu","subject":"customer-2","time":"2025-01-01T00:00:01Z","data":{"method":"POST","path":"/v1/orders","duration_ms":48}}`,
			`{"specversion":"1.0","type":"llm-tokens","id":"evt-0003","source":"gateway-us","subject":"customer-1","time":"2025-01-01T00:00:02Z","data":{"model":"gpt-4o","kind":"input","tokens":1532}}`,
		},
		footerHex: "00 03 00 00 00 01 00",
	},
	{
		file:        "zstd.batch",
		compression: format.CompressionZstd,
		records: []string{
			`{"specversion":"1.0","type":"llm-tokens","id":"evt-0101","source":"gateway-us","subject":"customer-7","time":"2025-01-01T00:01:00Z","data":{"model":"gpt-4o","kind":"input","tokens":210}}`,
			`{"specversion":"1.0","type":"llm-tokens","id":"evt-0102","source":"gateway-us","subject":"customer-7","time":"2025-01-01T00:01:00Z","data":{"model":"gpt-4o","kind":"output","tokens":987}}`,
			`{"specversion":"1.0","type":"storage","id":"evt-0103","source":"billing-agent","subject":"customer-8","time":"2025-01-01T00:02:00Z","data":{"bucket":"photos","bytes":1048576}}`,
		},
		footerHex: "01 03 00 00 00 01 00",
	},
	{
		file:        "empty.batch",
		compression: format.CompressionNone,
		records:     []string{},
		footerHex:   "00 00 00 00 00 01 00",
	},
	{
		file:        "empty-record.batch",
		compression: format.CompressionNone,
		records:     []string{"", "x", ""},
		footerHex:   "00 03 00 00 00 01 00",
	},
}

func (g golden) recordBytes() [][]byte {
	out := make([][]byte, len(g.records))
	for i, r := range g.records {
		out[i] = []byte(r)
	}
	return out
}

func spacedHex(b []byte) string {
	h := hex.EncodeToString(b)
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

func TestGolden(t *testing.T) {
	if *update {
		for _, g := range goldens {
			b, err := g.encode()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(goldenDir, g.file), b, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s (%d bytes)", g.file, len(b))
		}
	}
	readme, err := os.ReadFile("../testdata/README.md")
	if err != nil {
		t.Fatalf("testdata/README.md documents the golden files: %v", err)
	}
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(goldenDir, g.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := spacedHex(b[len(b)-format.FooterLen(g.ver()):]); got != g.footerHex {
				t.Fatalf("footer = %s, want %s", got, g.footerHex)
			}
			if !bytes.Contains(readme, []byte(g.file)) || !bytes.Contains(readme, []byte(g.footerHex)) {
				t.Errorf("testdata/README.md does not document %s with footer %s", g.file, g.footerHex)
			}
			batch, err := format.DecodeBatch(b)
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if batch.Footer.Compression != g.compression || int(batch.Footer.RecordCount) != len(g.records) || batch.Footer.Version != g.ver() {
				t.Fatalf("footer %+v, want compression %v, %d records, version %d", batch.Footer, g.compression, len(g.records), g.ver())
			}
			assertRecords(t, batch.Records, g.recordBytes())

			again, err := g.encode()
			if err != nil {
				t.Fatal(err)
			}
			switch g.compression {
			case format.CompressionNone:
				// Uncompressed encoding is fully specified: byte-identical.
				if !bytes.Equal(again, b) {
					t.Fatalf("re-encoding differs from the golden file:\n got % x\nwant % x", again, b)
				}
			case format.CompressionZstd:
				// zstd output may change between library versions; the
				// decoded records may not.
				var h zstd.Header
				if err := h.Decode(b); err != nil {
					t.Fatalf("golden zstd frame header: %v", err)
				}
				if !h.HasCheckSum {
					t.Errorf("golden zstd frame has no content checksum")
				}
				dec, err := format.DecodeBatch(again)
				if err != nil {
					t.Fatalf("decode re-encoded: %v", err)
				}
				assertRecords(t, dec.Records, g.recordBytes())
			}
		})
	}
}
