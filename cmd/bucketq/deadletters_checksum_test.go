package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
)

// These tests use only the command line and the objects' bytes, so they
// also run against a bucketq without dead-letter checksums (and fail).

// rawDLFile reads a dead-letter object of e's bucket.
func (e *dlEnv) rawDLFile(name string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, filepath.FromSlash(name)))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *dlEnv) writeDLFile(name string, b []byte) {
	e.t.Helper()
	p := filepath.Join(e.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// onlyDL is the one .json dead letter of e's bucket.
func (e *dlEnv) onlyDL() string {
	e.t.Helper()
	var jsons []string
	for _, o := range e.objects() {
		if strings.HasSuffix(o, ".json") {
			jsons = append(jsons, o)
		}
	}
	if len(jsons) != 1 {
		e.t.Fatalf("dead letters %v, want one", jsons)
	}
	return jsons[0]
}

// replaceOnce replaces the one occurrence of old in b, failing the test
// when old is not there exactly once.
func replaceOnce(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	if n := bytes.Count(b, []byte(old)); n != 1 {
		t.Fatalf("%q occurs %d times in the dead letter, want 1:\n%s", old, n, b)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

// dropChecksum turns a dead letter into the version 1 layout (no
// "version", no "crc32c"), as bucketq wrote it before checksums.
func dropChecksum(b []byte) []byte {
	b = regexp.MustCompile(`(?m)^  "version": \d+,\n`).ReplaceAll(b, nil)
	return regexp.MustCompile(`,\n  "crc32c": "[0-9a-f]*"`).ReplaceAll(b, nil)
}

// flipRecord changes "c1" to "c9" inside the first stored record (an OTLP
// logs request): the record still converts, to an event of another
// subject.
func flipRecord(t *testing.T, b []byte) []byte {
	t.Helper()
	var dl struct {
		Records []string `json:"records"`
	}
	if err := json.Unmarshal(b, &dl); err != nil || len(dl.Records) == 0 {
		t.Fatalf("no records in the dead letter (%v):\n%s", err, b)
	}
	rec, err := base64.StdEncoding.DecodeString(dl.Records[0])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(rec, []byte("c1")) != 1 {
		t.Fatalf("record %q does not hold c1 once", rec)
	}
	flipped := base64.StdEncoding.EncodeToString(bytes.Replace(rec, []byte("c1"), []byte("c9"), 1))
	return replaceOnce(t, b, `"`+dl.Records[0]+`"`, `"`+flipped+`"`)
}

// dlCase is one dead letter the consumer writes, and how to re-drive it
// so that it would be sent.
type dlCase func(t *testing.T) (e *dlEnv, name string, redriveArgs []string)

// poisonDL: an event the sink refused (sequence 0); the sink now accepts.
func poisonDL(t *testing.T) (*dlEnv, string, []string) {
	e := newDLEnv(t)
	e.om.SetPoison(openmetertest.PoisonFlag)
	e.putRecords(format.EventsHeader, time.Now().UnixMilli(), ceEvent("p", true))
	e.consume()
	e.om.SetPoison(nil)
	return e, e.onlyDL(), nil
}

// convertDL: an OTLP logs record (one item, customer c1) the default
// conversion cannot map (sequence 0, record 0); a fixed config can.
func convertDL(t *testing.T) (*dlEnv, string, []string) {
	e := newDLEnv(t)
	e.putRecords(format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf), 1735732800250, logsRequest(t, "c1"))
	e.consume()
	fixed := filepath.Join(e.dir, "fixed.yaml")
	if err := os.WriteFile(fixed, []byte("conversion:\n  logs:\n    subject: attributes.customer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e, e.onlyDL(), []string{"--config", fixed}
}

// partialDL: newPartialEnv's dead letter listing items 1 and 2; the full
// fix maps both.
func partialDL(t *testing.T) (*dlEnv, string, []string) {
	e := newPartialEnv(t)
	return e.dlEnv, e.name, []string{"--config", e.config("full.yaml", subjectAllItems)}
}

// TestRedriveRefusesChangedDeadLetters: a dead letter whose bytes changed
// after the consumer wrote it — a flipped byte in its event or records, an
// edited sequence, record index, ingestion time, header or failed item,
// a removed checksum — is refused by redrive (and a dry run): nothing is
// sent to the sink, the object is neither deleted nor rewritten, it is
// counted as damaged and named, and the command exits 1. Without the
// change each would have been sent.
func TestRedriveRefusesChangedDeadLetters(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dl     dlCase
		change func(t *testing.T, b []byte) []byte
	}{
		{"event byte", poisonDL, func(t *testing.T, b []byte) []byte { return replaceOnce(t, b, `"cust"`, `"cusu"`) }},
		{"poison sequence", poisonDL, func(t *testing.T, b []byte) []byte {
			return replaceOnce(t, b, `"sequence": 0,`, `"sequence": 1,`)
		}},
		{"records byte", convertDL, flipRecord},
		{"convert sequence", convertDL, func(t *testing.T, b []byte) []byte {
			return replaceOnce(t, b, `"sequence": 0,`, `"sequence": 5,`)
		}},
		{"record index", convertDL, func(t *testing.T, b []byte) []byte {
			return replaceOnce(t, b, `"record_index": 0,`, `"record_index": 3,`)
		}},
		{"ingestion time", convertDL, func(t *testing.T, b []byte) []byte {
			return replaceOnce(t, b, `"ingestion_time_ms": 1735732800250,`, `"ingestion_time_ms": 1735732800251,`)
		}},
		{"header", convertDL, func(t *testing.T, b []byte) []byte {
			return replaceOnce(t, b, `"header": "01020100",`, `"header": "01010100",`)
		}},
		{"failed item", partialDL, func(t *testing.T, b []byte) []byte {
			return replaceOnce(t, b, `"item": 1,`, `"item": 0,`)
		}},
		{"version removed", poisonDL, func(t *testing.T, b []byte) []byte {
			return replaceOnce(t, b, "\n  \"version\": 2,", "")
		}},
		{"checksum removed", convertDL, func(t *testing.T, b []byte) []byte {
			m := regexp.MustCompile(`,\n  "crc32c": "[0-9a-f]{8}"`).Find(b)
			if m == nil {
				t.Fatalf("no crc32c in the dead letter:\n%s", b)
			}
			return replaceOnce(t, b, string(m), "")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, name, args := tc.dl(t)
			changed := tc.change(t, e.rawDLFile(name))
			e.writeDLFile(name, changed)
			accepted, reqs := e.om.Accepted(), fmt.Sprint(e.om.RequestsByStatus())
			for _, dry := range []bool{true, false} {
				a := append([]string{"redrive"}, args...)
				if dry {
					a = append(a, "--dry-run")
				}
				code, out, errOut := e.deadLetters(a...)
				if code != 1 || !strings.Contains(out, "damaged    "+name+": ") || !strings.Contains(out, "changed or damaged") ||
					!strings.Contains(out, "still refused 0, skipped 0, damaged 1") || !strings.Contains(errOut, "1 dead letters were changed or damaged") ||
					strings.Contains(out, "would send") {
					t.Fatalf("redrive (dry run %v) of a changed dead letter: exit %d\nstdout:\n%s\nstderr:\n%s", dry, code, out, errOut)
				}
			}
			if e.om.Accepted() != accepted || fmt.Sprint(e.om.RequestsByStatus()) != reqs {
				t.Fatalf("the sink got requests %s → %v, accepted %d → %d; want none", reqs, e.om.RequestsByStatus(), accepted, e.om.Accepted())
			}
			if got := e.rawDLFile(name); !bytes.Equal(got, changed) {
				t.Fatalf("the changed dead letter was rewritten:\n%s", got)
			}
		})
	}
}

// TestDeadLettersListAndShowVerify: list names a changed dead letter as
// damaged and exits 1; show still prints it, after a loud warning, and
// exits 1; a dead letter as written shows without a word, one without a
// checksum (older bucketq) with a one-line note.
func TestDeadLettersListAndShowVerify(t *testing.T) {
	for _, tc := range []struct {
		name     string
		change   func(t *testing.T, b []byte) []byte
		code     int
		listLine string // in list's summary
		stderr   string // show's stderr contains it ("": empty)
	}{
		{"as written", func(t *testing.T, b []byte) []byte { return b }, 0, "poison_event 1", ""},
		{"no checksum", func(t *testing.T, b []byte) []byte { return dropChecksum(b) }, 0, "poison_event 1", "has no checksum (version 1, written by an older bucketq): not verified"},
		{"changed", func(t *testing.T, b []byte) []byte { return replaceOnce(t, b, `"cust"`, `"cusu"`) }, 1, "damaged 1", "WARNING: dead letter "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, name, _ := poisonDL(t)
			orig := e.rawDLFile(name)
			if !regexp.MustCompile(`(?m)^  "version": 2,$`).Match(orig) || !regexp.MustCompile(`"crc32c": "[0-9a-f]{8}"\n}$`).Match(orig) {
				t.Fatalf("the consumer's dead letter has no version 2 and crc32c:\n%s", orig)
			}
			e.writeDLFile(name, tc.change(t, orig))
			code, out, errOut := e.deadLetters("list")
			if code != tc.code || !strings.Contains(out, "1 dead letters under ingest/dead-letter/: "+tc.listLine) {
				t.Fatalf("list: exit %d (want %d)\n%s\n%s", code, tc.code, out, errOut)
			}
			code, out, errOut = e.deadLetters("show", name)
			if code != tc.code || !strings.Contains(out, `"reason": "poison_event"`) ||
				(tc.stderr == "" && strings.TrimSpace(errOut) != "") || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("show: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			if tc.code != 0 && (!strings.Contains(errOut, name) || !strings.Contains(errOut, "changed or damaged") || !strings.Contains(out, `"cusu"`)) {
				t.Fatalf("show of a changed dead letter must name it, say so, and still print it:\nstdout:\n%s\nstderr:\n%s", out, errOut)
			}
		})
	}
}

// TestRedriveReadsDeadLettersWithoutChecksum: dead letters written before
// checksums (no "version", no "crc32c") still re-drive, with a note; the
// committed golden ones too.
func TestRedriveReadsDeadLettersWithoutChecksum(t *testing.T) {
	golden := func(file string) dlCase {
		return func(t *testing.T) (*dlEnv, string, []string) {
			e := newDLEnv(t)
			b, err := os.ReadFile(filepath.Join("../../deadletter/testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			name := "ingest/dead-letter/00000000000000000042-01JBZ3M6Q8X2V4K7N9P0R5T1W3.batch/" + file
			e.writeDLFile(name, b)
			return e, name, nil
		}
	}
	for _, tc := range []struct {
		name   string
		dl     dlCase
		strip  bool
		sent   int
		stderr string
	}{
		{"poison", poisonDL, true, 1, "1 dead letters have no checksum"},
		{"convert", convertDL, true, 1, "1 dead letters have no checksum"},
		{"golden v1", golden("poison-r000003-e0000.v1.json"), false, 1, "1 dead letters have no checksum"},
		{"golden v2", golden("poison-r000001-e0000.json"), false, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, name, args := tc.dl(t)
			if tc.strip {
				e.writeDLFile(name, dropChecksum(e.rawDLFile(name)))
			}
			before := e.om.Accepted()
			code, out, errOut := e.deadLetters(append([]string{"redrive"}, args...)...)
			if code != 0 || !strings.Contains(out, "re-driven 1, partly re-driven 0, still refused 0, skipped 0\n") {
				t.Fatalf("redrive: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			if tc.stderr != "" && !strings.Contains(errOut, tc.stderr) || tc.stderr == "" && strings.Contains(errOut, "no checksum") {
				t.Fatalf("redrive stderr %q, want %q", errOut, tc.stderr)
			}
			if got := e.om.Accepted() - before; got != tc.sent {
				t.Fatalf("sent %d events, want %d", got, tc.sent)
			}
			if objs := e.objects(); len(objs) != 0 {
				t.Fatalf("dead letters left %v", objs)
			}
		})
	}
}

// TestRedriveRewritesWithAFreshChecksum: a partly re-driven dead letter is
// rewritten as version 2 with the checksum of its new contents — also one
// that had none — so it verifies (show says nothing) and a later redrive
// reads it.
func TestRedriveRewritesWithAFreshChecksum(t *testing.T) {
	for _, strip := range []bool{false, true} {
		t.Run(fmt.Sprintf("without checksum %v", strip), func(t *testing.T) {
			e := newPartialEnv(t)
			if strip {
				e.writeDLFile(e.name, dropChecksum(e.rawDL()))
			}
			old := e.rawDL()
			code, out, errOut := e.deadLetters("redrive", "--config", e.config("part.yaml", subjectTenants))
			if code != 1 || !strings.Contains(out, "re-driven 0, partly re-driven 1, still refused 0, skipped 0\n") {
				t.Fatalf("partial redrive: exit %d\n%s\n%s", code, out, errOut)
			}
			b := e.rawDL()
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if string(m["version"]) != "2" || !regexp.MustCompile(`^"[0-9a-f]{8}"$`).Match(m["crc32c"]) ||
				bytes.Contains(old, m["crc32c"]) {
				t.Fatalf("rewritten dead letter lacks a fresh version 2 checksum:\n%s", b)
			}
			code, out, errOut = e.deadLetters("show", e.name)
			if code != 0 || strings.TrimSpace(errOut) != "" {
				t.Fatalf("show of the rewritten dead letter: exit %d\n%s\n%s", code, out, errOut)
			}
			code, out, errOut = e.deadLetters("redrive", "--config", e.config("full.yaml", subjectAllItems))
			if code != 0 || !strings.Contains(out, "re-driven 1, partly re-driven 0, still refused 0, skipped 0\n") {
				t.Fatalf("redrive of the rewritten dead letter: exit %d\n%s\n%s", code, out, errOut)
			}
		})
	}
}

// TestConsumerWritesVerifiableDeadLetters: every kind of dead letter the
// consumer writes carries version 2 and a crc32c that verifies (show and
// list say nothing).
func TestConsumerWritesVerifiableDeadLetters(t *testing.T) {
	e := newDLEnv(t)
	e.om.SetPoison(openmetertest.PoisonFlag)
	now := time.Now().UnixMilli()
	e.putRecords(format.EventsHeader, now, ceEvent("ok", false), ceEvent("p", true))
	e.put([]byte("this is not a batch"), []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: now, Payload: format.EventsHeader.Bytes()}})
	e.put(nil, []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: now, Payload: format.EventsHeader.Bytes()}})
	e.putRecords(format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf), now, logsRequest(t, "c1"))
	e.putRecords(format.NewHeader(format.SignalType(9), format.EncodingCloudEventsJSON), now, []byte("x"))
	e.consume()
	reasons := map[string]string{}
	for _, name := range e.objects() {
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		b := e.rawDLFile(name)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		reasons[name] = string(m["reason"])
		if string(m["version"]) != "2" || !regexp.MustCompile(`^"[0-9a-f]{8}"$`).Match(m["crc32c"]) {
			t.Errorf("%s: version %s, crc32c %s; want 2 and 8 hex digits", name, m["version"], m["crc32c"])
		}
		code, out, errOut := e.deadLetters("show", name)
		if code != 0 || strings.TrimSpace(errOut) != "" {
			t.Errorf("show %s: exit %d\n%s\n%s", name, code, out, errOut)
		}
	}
	if len(reasons) != 5 {
		t.Fatalf("dead letters %v, want the 5 reasons", reasons)
	}
	code, out, errOut := e.deadLetters("list")
	if code != 0 || !strings.Contains(out, "5 dead letters under ingest/dead-letter/: poison_event 1, convert_error 1, unknown_signal 1, batch_missing 1, batch_corrupt 1") {
		t.Fatalf("list: exit %d\n%s\n%s", code, out, errOut)
	}
}
