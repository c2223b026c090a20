package inspect

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
)

func TestManifestJSONExact(t *testing.T) {
	m := &manifest.Manifest{Epoch: 7, NextSequence: 12, Entries: []manifest.Entry{
		{Sequence: 10, Location: "ingest/data/a", Metadata: []manifest.Metadata{
			{StartIndex: 0, IngestionTimeMs: 1700000000000, Payload: format.EventsHeader.Bytes()},
			{StartIndex: 3, IngestionTimeMs: 1700000000001, Payload: format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf).Bytes()},
		}},
		{Sequence: 11, Location: "ingest/data/b", Metadata: []manifest.Metadata{
			{StartIndex: 0, IngestionTimeMs: 5, Payload: []byte{9, 9}},               // too short: invalid
			{StartIndex: 1, IngestionTimeMs: 6, Payload: []byte{1, 77, 88, 0, 0xab}}, // unknown codes parse
		}},
	}}
	got, err := Manifest(m.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, got); err != nil {
		t.Fatal(err)
	}
	want := `{"version":2,"epoch":7,"next_sequence":12,"entries":[` +
		`{"sequence":10,"location":"ingest/data/a","metadata":[` +
		`{"start_index":0,"ingestion_time_ms":1700000000000,"payload":"01040200","signal":"events","encoding":"cloudevents-json"},` +
		`{"start_index":3,"ingestion_time_ms":1700000000001,"payload":"01020100","signal":"logs","encoding":"otlp-protobuf"}]},` +
		`{"sequence":11,"location":"ingest/data/b","metadata":[` +
		`{"start_index":0,"ingestion_time_ms":5,"payload":"0909","signal":"invalid","encoding":"invalid"},` +
		`{"start_index":1,"ingestion_time_ms":6,"payload":"014d5800ab","signal":"unknown(77)","encoding":"unknown(88)"}]}]}` + "\n"
	if buf.String() != want {
		t.Fatalf("manifest JSON\n got %s\nwant %s", buf.String(), want)
	}
}

func TestManifestJSONEmpty(t *testing.T) {
	for name, b := range map[string][]byte{
		"missing object":   manifest.Empty(manifest.Version1),
		"drained, epoch 3": (&manifest.Manifest{Epoch: 3, NextSequence: 40}).Encode(),
	} {
		got, err := Manifest(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var buf bytes.Buffer
		WriteJSON(&buf, got)
		want := map[string]string{
			"missing object":   `{"version":1,"epoch":0,"next_sequence":0,"entries":[]}` + "\n",
			"drained, epoch 3": `{"version":2,"epoch":3,"next_sequence":40,"entries":[]}` + "\n",
		}[name]
		if buf.String() != want {
			t.Errorf("%s: got %s want %s", name, buf.String(), want)
		}
	}
}

func TestManifestCorrupt(t *testing.T) {
	// Version 1 for the structural errors: version 2's checksum would
	// catch them first (the "bit flipped" case).
	good := (&manifest.Manifest{Version: manifest.Version1, NextSequence: 1, Entries: []manifest.Entry{{Sequence: 0, Location: "l"}}}).Encode()
	good2 := (&manifest.Manifest{NextSequence: 1, Entries: []manifest.Entry{{Sequence: 0, Location: "l"}}}).Encode()
	cases := map[string]struct {
		b    []byte
		want error
	}{
		"too short":       {[]byte{1, 2, 3, 1, 0}, manifest.ErrTooShort},
		"empty object":    {[]byte{}, manifest.ErrTooShort},
		"bit flipped":     {append(append([]byte{}, good2[:3]...), append([]byte{good2[3] ^ 1}, good2[4:]...)...), manifest.ErrChecksum},
		"bad version":     {append(append([]byte{}, good[:len(good)-2]...), 9, 0), manifest.ErrVersion},
		"truncated entry": {append(append([]byte{}, good[:5]...), good[len(good)-manifest.FooterSizeV1:]...), manifest.ErrEntryCount},
		"entry overrun":   {append(append([]byte{}, good[:len(good)-manifest.FooterSizeV1-1]...), good[len(good)-manifest.FooterSizeV1:]...), manifest.ErrEntryOverrun},
	}
	for name, tc := range cases {
		if _, err := Manifest(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
}

func TestBatchJSONExact(t *testing.T) {
	recs := [][]byte{[]byte(`{"id":"1"}`), {0, 1, 2, 255}, {}}
	for _, tc := range []struct {
		c       format.Compression
		records bool
		want    string
	}{
		{format.CompressionZstd, false, `{"compression":"zstd","record_count":3,"version":2}` + "\n"},
		{format.CompressionNone, true, `{"compression":"none","record_count":3,"version":2,"records":["eyJpZCI6IjEifQ==","AAEC/w==",""]}` + "\n"},
		{format.CompressionZstd, true, `{"compression":"zstd","record_count":3,"version":2,"records":["eyJpZCI6IjEifQ==","AAEC/w==",""]}` + "\n"},
	} {
		b, err := format.EncodeBatch(tc.c, recs)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := Batch(b, tc.records)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		WriteJSON(&buf, got)
		if buf.String() != tc.want {
			t.Errorf("%s records=%v:\n got %s\nwant %s", tc.c, tc.records, buf.String(), tc.want)
		}
	}
	// An empty batch asked for records lists none, but lists them.
	b, _ := format.EncodeBatch(format.CompressionNone, nil)
	got, _, err := Batch(b, true)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	WriteJSON(&buf, got)
	if want := `{"compression":"none","record_count":0,"version":2,"records":[]}` + "\n"; buf.String() != want {
		t.Errorf("empty batch: got %s want %s", buf.String(), want)
	}
}

func TestBatchCorrupt(t *testing.T) {
	good, _ := format.EncodeBatch(format.CompressionZstd, [][]byte{[]byte("abc")})
	bad := append([]byte{}, good...)
	bad[0] ^= 0xff
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"too short":   {[]byte{1}, format.ErrTooShort},
		"zstd broken": {bad, format.ErrChecksum},
	} {
		if _, _, err := Batch(tc.b, false); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
}

func TestTables(t *testing.T) {
	m := &manifest.Manifest{Epoch: 1, NextSequence: 1, Entries: []manifest.Entry{{Sequence: 0, Location: "ingest/data/x",
		Metadata: []manifest.Metadata{{IngestionTimeMs: 0, Payload: format.EventsHeader.Bytes()}}}}}
	mj, _ := Manifest(m.Encode())
	var buf bytes.Buffer
	WriteManifestTable(&buf, "ingest/manifest", mj)
	for _, s := range []string{"epoch 1", "next_sequence 1", "1 entries", "ingest/data/x", "1970-01-01T00:00:00Z", "events", "cloudevents-json"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("manifest table lacks %q:\n%s", s, buf.String())
		}
	}
	b, _ := format.EncodeBatch(format.CompressionNone, [][]byte{[]byte(`{"id":"e1"}`), {0, 1}})
	bj, recs, _ := Batch(b, true)
	buf.Reset()
	WriteBatchTable(&buf, "ingest/data/x", bj, recs)
	for _, s := range []string{"compression none", "2 records", "0\t{\"id\":\"e1\"}", "1\tbase64:AAE="} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("batch table lacks %q:\n%s", s, buf.String())
		}
	}
}
