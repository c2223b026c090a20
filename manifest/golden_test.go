package manifest_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/bucketq/bucketq/manifest"
)

var update = flag.Bool("update", false, "rewrite the golden manifests in testdata/manifests")

const goldenDir = "../testdata/manifests"

// goldens are the committed manifests; testdata/README.md states their
// contents. Changing one of these is a format change.
var goldens = []struct {
	file   string
	m      manifest.Manifest
	footer string // hex of the footer (22 bytes in version 1, 26 in version 2)
}{
	{
		file:   "empty.manifest",
		m:      manifest.Manifest{Version: manifest.Version1},
		footer: "00000000" + "0000000000000000" + "0000000000000000" + "0100",
	},
	{
		file:   "several.manifest",
		m:      manifest.Manifest{Version: manifest.Version1, NextSequence: 10, Epoch: 3, Entries: severalEntries},
		footer: "03000000" + "0a00000000000000" + "0300000000000000" + "0100",
	},
	{
		file:   "several-v2.manifest",
		m:      manifest.Manifest{Version: manifest.Version2, NextSequence: 10, Epoch: 3, Entries: severalEntries},
		footer: "03000000" + "0a00000000000000" + "0300000000000000" + "eb14f710" + "0200",
	},
}

var severalEntries = []manifest.Entry{
	{Sequence: 7, Location: "ingest/data/01J8Z6Q3W4X5Y6Z7A8B9C0D1E2.batch", Metadata: []manifest.Metadata{
		{StartIndex: 0, IngestionTimeMs: 1718000000000, Payload: []byte{0x01, 0x04, 0x02, 0x00}},
	}},
	{Sequence: 8, Location: "ingest/data/01J8Z6Q3W4X5Y6Z7A8B9C0D1E3.batch", Metadata: []manifest.Metadata{
		{StartIndex: 0, IngestionTimeMs: 1718000000250, Payload: []byte{0x01, 0x01, 0x01, 0x00}},
		{StartIndex: 12, IngestionTimeMs: 1718000000251, Payload: []byte{0x01, 0x02, 0x01, 0x00}},
	}},
	{Sequence: 9, Location: "ingest/data/01J8Z6Q3W4X5Y6Z7A8B9C0D1E4.batch", Metadata: []manifest.Metadata{
		{StartIndex: 0, IngestionTimeMs: 1718000000500, Payload: []byte{0x01, 0x04, 0x02, 0x00}},
		{StartIndex: 3, IngestionTimeMs: 1718000000501, Payload: []byte{0x01, 0x03, 0x01, 0x00}},
		{StartIndex: 40, IngestionTimeMs: 1718000000502, Payload: []byte{0x01, 0x02, 0x01, 0x00}},
	}},
}

func readGolden(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, file))
	if err != nil {
		t.Fatalf("read golden (run go test ./manifest -run TestGolden -update to create): %v", err)
	}
	return b
}

func TestGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			if *update {
				if err := os.MkdirAll(goldenDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(goldenDir, g.file), g.m.Encode(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b := readGolden(t, g.file)
			if got := hex.EncodeToString(b[len(b)-manifest.FooterLen(g.m.Version):]); got != g.footer {
				t.Fatalf("footer %s, want %s", got, g.footer)
			}
			m, err := manifest.Decode(b)
			if err != nil {
				t.Fatalf("decode golden: %v", err)
			}
			equalManifest(t, m, &g.m)
			if again := m.Encode(); !bytes.Equal(again, b) {
				t.Fatalf("re-encoded golden differs:\n got %x\nwant %x", again, b)
			}
			if enc := g.m.Encode(); !bytes.Equal(enc, b) {
				t.Fatalf("the encoder no longer produces the golden bytes (format change?)")
			}
		})
	}
}
