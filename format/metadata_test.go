package format_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bucketq/bucketq/format"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h     format.Header
		bytes []byte
		str   string
		known bool
	}{
		{"events", format.EventsHeader, []byte{1, 4, 2, 0}, "v1 events/cloudevents-json", true},
		{"metrics", format.NewHeader(format.SignalMetrics, format.EncodingOTLPProtobuf), []byte{1, 1, 1, 0}, "v1 metrics/otlp-protobuf", true},
		{"logs", format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf), []byte{1, 2, 1, 0}, "v1 logs/otlp-protobuf", true},
		{"traces", format.NewHeader(format.SignalTraces, format.EncodingOTLPProtobuf), []byte{1, 3, 1, 0}, "v1 traces/otlp-protobuf", true},
		{"unknown signal", format.NewHeader(9, format.EncodingOTLPProtobuf), []byte{1, 9, 1, 0}, "v1 unknown(9)/otlp-protobuf", false},
		{"unknown encoding", format.NewHeader(format.SignalEvents, 200), []byte{1, 4, 200, 0}, "v1 events/unknown(200)", false},
		{"signal 0", format.NewHeader(0, 0), []byte{1, 0, 0, 0}, "v1 unknown(0)/unknown(0)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.h.Bytes()
			if !bytes.Equal(b, tc.bytes) {
				t.Fatalf("Bytes() = % x, want % x", b, tc.bytes)
			}
			if len(b) != format.MetadataHeaderSize {
				t.Fatalf("Bytes() has %d bytes, want %d", len(b), format.MetadataHeaderSize)
			}
			payload := append(bytes.Clone(b), "future"...)
			h, rest, err := format.ParseHeader(payload)
			if err != nil {
				t.Fatalf("ParseHeader: %v", err)
			}
			if h != tc.h {
				t.Fatalf("ParseHeader = %+v, want %+v", h, tc.h)
			}
			if string(rest) != "future" {
				t.Fatalf("rest = %q, want %q", rest, "future")
			}
			if h.String() != tc.str {
				t.Fatalf("String() = %q, want %q", h.String(), tc.str)
			}
			if h.Known() != tc.known {
				t.Fatalf("Known() = %v, want %v", h.Known(), tc.known)
			}
			_, rest, err = format.ParseHeader(b)
			if err != nil || len(rest) != 0 {
				t.Fatalf("ParseHeader(exact 4 bytes): rest %q err %v", rest, err)
			}
		})
	}
}

func TestHeaderUnknownCodesNamed(t *testing.T) {
	for code := 0; code < 256; code++ {
		s, e := format.SignalType(code), format.PayloadEncoding(code)
		h, _, err := format.ParseHeader([]byte{1, byte(code), byte(code), 0})
		if err != nil {
			t.Fatalf("code %d: unknown codes must decode, got %v", code, err)
		}
		if h.Signal != s || h.Encoding != e {
			t.Fatalf("code %d: decoded %+v", code, h)
		}
		wantSignalKnown := code >= 1 && code <= 4
		wantEncodingKnown := code == 1 || code == 2
		if s.Known() != wantSignalKnown {
			t.Errorf("SignalType(%d).Known() = %v", code, s.Known())
		}
		if e.Known() != wantEncodingKnown {
			t.Errorf("PayloadEncoding(%d).Known() = %v", code, e.Known())
		}
		if !wantSignalKnown && s.String() != fmt.Sprintf("unknown(%d)", code) {
			t.Errorf("SignalType(%d).String() = %q", code, s.String())
		}
		if !wantEncodingKnown && e.String() != fmt.Sprintf("unknown(%d)", code) {
			t.Errorf("PayloadEncoding(%d).String() = %q", code, e.String())
		}
		if h.Known() != (wantSignalKnown && wantEncodingKnown) {
			t.Errorf("header %v Known() = %v", h, h.Known())
		}
	}
}

func TestParseHeaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		want    error
		wantMsg string
	}{
		{"nil", nil, format.ErrMetadataTooShort, "0 bytes"},
		{"1 byte", []byte{1}, format.ErrMetadataTooShort, "1 bytes"},
		{"3 bytes", []byte{1, 4, 2}, format.ErrMetadataTooShort, "3 bytes"},
		{"version 0", []byte{0, 4, 2, 0}, format.ErrMetadataVersion, ": 0"},
		{"version 2", []byte{2, 4, 2, 0}, format.ErrMetadataVersion, ": 2"},
		{"version 255", []byte{255, 4, 2, 0}, format.ErrMetadataVersion, ": 255"},
		{"reserved 1", []byte{1, 4, 2, 1}, format.ErrMetadataReserved, "0x01"},
		{"reserved 0x80", []byte{1, 4, 2, 0x80, 9, 9}, format.ErrMetadataReserved, "0x80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rest, err := format.ParseHeader(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want errors.Is %v", err, tc.want)
			}
			if rest != nil {
				t.Errorf("rest = %q on error, want nil", rest)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tc.want.Error()) || !strings.HasSuffix(msg, tc.wantMsg) {
				t.Errorf("message %q: want %q ... %q", msg, tc.want.Error(), tc.wantMsg)
			}
		})
	}
}

func TestParseSignalAndEncoding(t *testing.T) {
	for name, want := range map[string]format.SignalType{
		"metrics": format.SignalMetrics, "logs": format.SignalLogs, "traces": format.SignalTraces, "events": format.SignalEvents,
	} {
		got, err := format.ParseSignal(name)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", name, got, err, want)
		}
		if got.String() != name {
			t.Errorf("SignalType(%d).String() = %q, want %q", got, got.String(), name)
		}
	}
	for name, want := range map[string]format.PayloadEncoding{
		"otlp-protobuf": format.EncodingOTLPProtobuf, "cloudevents-json": format.EncodingCloudEventsJSON,
	} {
		got, err := format.ParseEncoding(name)
		if err != nil || got != want {
			t.Errorf("ParseEncoding(%q) = %v, %v; want %v", name, got, err, want)
		}
		if got.String() != name {
			t.Errorf("PayloadEncoding(%d).String() = %q, want %q", got, got.String(), name)
		}
	}
	for _, bad := range []string{"", "unknown(9)", "Events", "profiles", "otlp"} {
		if got, err := format.ParseSignal(bad); err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ParseSignal(%q) = %v, %v; want an error naming the input", bad, got, err)
		}
		if got, err := format.ParseEncoding(bad); err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ParseEncoding(%q) = %v, %v; want an error naming the input", bad, got, err)
		}
	}
}
