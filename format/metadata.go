package format

import (
	"errors"
	"fmt"
)

// MetadataVersion is the only version of the 4-byte entry metadata header.
const MetadataVersion uint8 = 1

// MetadataHeaderSize is the length of the entry metadata header.
const MetadataHeaderSize = 4

// SignalType says what kind of data the records of a metadata range hold.
// Codes 1-3 are opendata's; 4 is bucketq's (RFC 0003).
type SignalType uint8

const (
	SignalMetrics SignalType = 1
	SignalLogs    SignalType = 2
	SignalTraces  SignalType = 3
	SignalEvents  SignalType = 4
)

// PayloadEncoding says how each record is encoded.
// Code 1 is opendata's; 2 is bucketq's (RFC 0003).
type PayloadEncoding uint8

const (
	EncodingOTLPProtobuf    PayloadEncoding = 1
	EncodingCloudEventsJSON PayloadEncoding = 2
)

var signalNames = map[SignalType]string{
	SignalMetrics: "metrics", SignalLogs: "logs", SignalTraces: "traces", SignalEvents: "events",
}

var encodingNames = map[PayloadEncoding]string{
	EncodingOTLPProtobuf: "otlp-protobuf", EncodingCloudEventsJSON: "cloudevents-json",
}

// Known reports whether the code is in the registry of RFC 0003.
func (s SignalType) Known() bool { _, ok := signalNames[s]; return ok }

// String returns the registry name, or "unknown(N)".
func (s SignalType) String() string {
	if n, ok := signalNames[s]; ok {
		return n
	}
	return fmt.Sprintf("unknown(%d)", uint8(s))
}

// Known reports whether the code is in the registry of RFC 0003.
func (e PayloadEncoding) Known() bool { _, ok := encodingNames[e]; return ok }

// String returns the registry name, or "unknown(N)".
func (e PayloadEncoding) String() string {
	if n, ok := encodingNames[e]; ok {
		return n
	}
	return fmt.Sprintf("unknown(%d)", uint8(e))
}

// ParseSignal maps a registry name back to its code.
func ParseSignal(s string) (SignalType, error) {
	for k, v := range signalNames {
		if v == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// ParseEncoding maps a registry name back to its code.
func ParseEncoding(s string) (PayloadEncoding, error) {
	for k, v := range encodingNames {
		if v == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown payload encoding %q", s)
}

// Header is the 4-byte metadata header that opens every manifest metadata
// payload: [version=1][signal_type][payload_encoding][reserved=0].
type Header struct {
	Version  uint8
	Signal   SignalType
	Encoding PayloadEncoding
	Reserved uint8
}

// NewHeader returns a version-1 header.
func NewHeader(s SignalType, e PayloadEncoding) Header {
	return Header{Version: MetadataVersion, Signal: s, Encoding: e}
}

// EventsHeader is the header of CloudEvents JSON records.
var EventsHeader = NewHeader(SignalEvents, EncodingCloudEventsJSON)

// Bytes returns the 4 encoded bytes.
func (h Header) Bytes() []byte {
	return []byte{h.Version, byte(h.Signal), byte(h.Encoding), h.Reserved}
}

// Known reports whether both signal and encoding are registered codes.
func (h Header) Known() bool { return h.Signal.Known() && h.Encoding.Known() }

func (h Header) String() string {
	return fmt.Sprintf("v%d %s/%s", h.Version, h.Signal, h.Encoding)
}

// Header decode errors.
var (
	ErrMetadataTooShort = errors.New("metadata payload shorter than its 4-byte header")
	ErrMetadataVersion  = errors.New("unsupported metadata header version")
	ErrMetadataReserved = errors.New("metadata header reserved byte is not zero")
)

// ParseHeader decodes the header at the start of a metadata payload and
// returns the bytes after it (empty for version 1 writers). Unknown signal
// and encoding codes are not errors: they decode, and Known reports false,
// so a consumer can dead-letter the entry by name.
func ParseHeader(payload []byte) (Header, []byte, error) {
	if len(payload) < MetadataHeaderSize {
		return Header{}, nil, fmt.Errorf("%w: %d bytes", ErrMetadataTooShort, len(payload))
	}
	h := Header{Version: payload[0], Signal: SignalType(payload[1]), Encoding: PayloadEncoding(payload[2]), Reserved: payload[3]}
	if h.Version != MetadataVersion {
		return h, nil, fmt.Errorf("%w: %d", ErrMetadataVersion, h.Version)
	}
	if h.Reserved != 0 {
		return h, nil, fmt.Errorf("%w: 0x%02x", ErrMetadataReserved, h.Reserved)
	}
	return h, payload[MetadataHeaderSize:], nil
}
