package deadletter

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// updateDL regenerates the golden dead letters:
// go test ./deadletter -run TestGoldenDeadLetters -update-dead-letters
// The files are committed; regenerate only on a deliberate format change
// and update ../testdata/README.md with them.
var updateDL = flag.Bool("update-dead-letters", false, "rewrite the golden files in testdata")

const goldenDLDir = "testdata"

func intp(i int) *int { return &i }

// goldenDLs are the committed dead letters, as the consumer writes them
// (version 2) and as bucketq wrote them before checksums (version 1).
var goldenDLs = []struct {
	file    string
	version int    // 2: Encode; 0: version 1, json.MarshalIndent
	crc     string // as written in testdata/README.md
	dl      Letter
}{
	{
		file: "poison-r000001-e0000.json", version: 2, crc: "8476b284",
		dl: Letter{
			Reason: PoisonEvent, Location: "ingest/data/01JBZ3M6Q8X2V4K7N9P0R5T1W3.batch", Sequence: 42,
			RecordIndex: intp(1), EventIndex: intp(0), Header: "01040200", IngestionTimeMs: 1735732800250,
			Status: 400, Response: `{"type":"about:blank","title":"Bad Request","status":400,"detail":"invalid event"}`,
			Event:        json.RawMessage(`{"specversion":"1.0","id":"evt-0301","source":"gateway-eu","type":"api-calls","subject":"customer-1","time":"2025-01-01T12:00:00Z","data":{"method":"GET","path":"/v1/orders","duration_ms":9}}`),
			Epoch:        3,
			DeadLettered: time.Date(2025, 1, 1, 12, 0, 1, 500000000, time.UTC),
		},
	},
	{
		file: "convert-r000000.json", version: 2, crc: "71f6be3f",
		dl: Letter{
			Reason: ConvertError, Location: "ingest/data/01JBZ3M6Q8X2V4K7N9P0R5T1W4.batch", Sequence: 43,
			RecordIndex: intp(0), Signal: "logs", Encoding: "otlp-protobuf", Header: "01020100", IngestionTimeMs: 1735732800500,
			Error: `record 0 of ingest/data/01JBZ3M6Q8X2V4K7N9P0R5T1W4.batch (logs): 1 items cannot be converted, 1 events of the others delivered; first: resource 0 scope 0 log record 1: subject: no such key: customer`,
			// Not a real OTLP request: the golden pins the layout, not a conversion.
			Records:     [][]byte{[]byte("\x0a\x00\xffbinary record bytes")},
			FailedItems: []FailedItem{{Item: 1, Position: "resource 0 scope 0 log record 1", Error: "subject: no such key: customer"}},
			Epoch:       3, DeadLettered: time.Date(2025, 1, 1, 12, 0, 2, 0, time.UTC),
		},
	},
	{
		file: "poison-r000003-e0000.v1.json", version: 0,
		dl: Letter{
			Reason: PoisonEvent, Location: "ingest/data/01JBZ3M6Q8X2V4K7N9P0R5T1W3.batch", Sequence: 42,
			RecordIndex: intp(3), EventIndex: intp(0), Header: "01040200", IngestionTimeMs: 1735732800250,
			Status: 400, Response: "invalid event",
			Event:        json.RawMessage(`{"specversion":"1.0","id":"evt-0302","source":"gateway-eu","type":"api-calls","subject":"customer-2","time":"2025-01-01T12:00:00Z","data":{"method":"POST","path":"/v1/orders","duration_ms":31}}`),
			Epoch:        2,
			DeadLettered: time.Date(2025, 1, 1, 11, 59, 0, 0, time.UTC),
		},
	},
}

func encodeGoldenDL(t *testing.T, version int, dl Letter) []byte {
	t.Helper()
	var b []byte
	var err error
	if version == 0 {
		b, err = json.MarshalIndent(dl, "", "  ")
	} else {
		b, err = Encode(dl)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenDeadLetters: each committed dead letter decodes and verifies
// (version 1: without a checksum), has the golden fields and checksum, and
// re-encodes to the same bytes, so a change to them is a format change.
func TestGoldenDeadLetters(t *testing.T) {
	for _, g := range goldenDLs {
		t.Run(g.file, func(t *testing.T) {
			p := filepath.Join(goldenDLDir, g.file)
			want := encodeGoldenDL(t, g.version, g.dl)
			if *updateDL {
				if err := os.WriteFile(p, want, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			dl, err := Decode(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if dl.Version != g.version || dl.CRC32C != g.crc {
				t.Fatalf("version %d, crc32c %q; want %d, %q", dl.Version, dl.CRC32C, g.version, g.crc)
			}
			if got := encodeGoldenDL(t, g.version, dl); !bytes.Equal(got, b) {
				t.Fatalf("re-encoded differs from %s:\n%s", g.file, got)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("%s differs from the golden literal (regenerate with -update-dead-letters only on a format change):\n%s", g.file, want)
			}
			if g.version == 0 && (strings.Contains(string(b), `"version"`) || strings.Contains(string(b), `"crc32c"`)) {
				t.Fatalf("version 1 golden carries version or crc32c:\n%s", b)
			}
		})
	}
}

// TestDeadLetterBitFlips: no single-bit flip anywhere in a version 2
// dead letter changes what it decodes to unnoticed: the decode fails
// (ErrDamaged) or gives the same dead letter (a key whose case
// flipped still matches its field).
func TestDeadLetterBitFlips(t *testing.T) {
	for _, g := range goldenDLs {
		if g.version == 0 {
			continue
		}
		t.Run(g.file, func(t *testing.T) {
			orig := encodeGoldenDL(t, 2, g.dl)
			caught := 0
			for i := range orig {
				for bit := range 8 {
					b := bytes.Clone(orig)
					b[i] ^= 1 << bit
					dl, err := Decode(b)
					if err != nil {
						if !errors.Is(err, ErrDamaged) {
							t.Fatalf("byte %d bit %d: error %v does not wrap ErrDamaged", i, bit, err)
						}
						caught++
						continue
					}
					if got := encodeGoldenDL(t, 2, dl); !bytes.Equal(got, orig) {
						t.Fatalf("byte %d bit %d (%q→%q) changed the dead letter unnoticed:\n%s", i, bit, orig[i], b[i], got)
					}
				}
			}
			if caught < 7*len(orig) {
				t.Fatalf("only %d of %d flips caught", caught, 8*len(orig))
			}
		})
	}
}

// TestDecodeDeadLetterRefuses: the ways a dead letter fails verification,
// each an error wrapping ErrDamaged that says what is wrong.
func TestDecodeDeadLetterRefuses(t *testing.T) {
	v2 := string(encodeGoldenDL(t, 2, goldenDLs[0].dl))
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"sequence", `"sequence": 42,`, `"sequence": 43,`, "changed or damaged after bucketq wrote it"},
		{"event byte", `"customer-1"`, `"customer-7"`, "its fields hash to"},
		{"checksum", `"crc32c": "8476b284"`, `"crc32c": "8476b285"`, `crc32c says "8476b285"`},
		{"no checksum", `,` + "\n" + `  "crc32c": "8476b284"`, ``, "version 2 without crc32c"},
		{"no version", `"version": 2,`, ``, "its fields hash to"},
		{"newer version", `"version": 2,`, `"version": 3,`, "version 3 is not one this bucketq reads"},
		{"not JSON", `"epoch": 3,`, `"epoch": 3,,`, "not a JSON dead letter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Count(v2, tc.old) != 1 {
				t.Fatalf("%q not once in\n%s", tc.old, v2)
			}
			_, err := Decode([]byte(strings.Replace(v2, tc.old, tc.new, 1)))
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrDamaged saying %q", err, tc.want)
			}
		})
	}
}

// FuzzDecodeDeadLetter: decoding never panics, and whatever decodes
// (verified, or version 1) encodes to a version 2 dead letter that
// decodes, verifies and encodes to the same bytes — the round trip a
// redrive's rewrite relies on.
func FuzzDecodeDeadLetter(f *testing.F) {
	for _, g := range goldenDLs {
		b, err := os.ReadFile(filepath.Join(goldenDLDir, g.file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":2,"crc32c":"00000000"}`))
	f.Add([]byte(`{"reason":"poison_event","event":null,"dead_lettered_at":"2025-01-01T00:00:00+01:00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dl, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("error %v does not wrap ErrDamaged", err)
			}
			return
		}
		if dl.Version == 0 && dl.CRC32C != "" || dl.Version != 0 && dl.Version != Version {
			t.Fatalf("accepted version %d crc32c %q", dl.Version, dl.CRC32C)
		}
		enc, err := Encode(dl)
		if err != nil {
			// Only a dead letter bucketq cannot have written (e.g. a time
			// json cannot encode) fails here; a rewrite would report it.
			return
		}
		dl2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded dead letter does not verify: %v\n%s", err, enc)
		}
		enc2, err := Encode(dl2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the dead letter (%v):\n%s\n%s", err, enc, enc2)
		}
	})
}
