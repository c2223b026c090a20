package convert

import (
	"errors"
	"testing"

	"github.com/bucketq/bucketq/format"
)

func TestRegistry(t *testing.T) {
	reg := NewRegistry()
	cases := []struct {
		name    string
		header  format.Header
		data    string
		want    string
		wantErr error
		anyErr  bool
	}{
		{"pass-through", format.EventsHeader, `{"id":"1"}`, `{"id":"1"}`, nil, false},
		{"trims whitespace", format.EventsHeader, " \n{\"id\":\"2\"}\n", `{"id":"2"}`, nil, false},
		{"array is not an event", format.EventsHeader, `[{"id":"1"}]`, "", nil, true},
		{"broken json", format.EventsHeader, `{"id":`, "", nil, true},
		{"empty record", format.EventsHeader, ``, "", nil, true},
		{"unknown signal", format.NewHeader(9, format.EncodingCloudEventsJSON), `{}`, "", ErrNoConverter, true},
		{"otlp not registered", format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf), `x`, "", ErrNoConverter, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := reg.Convert(Record{Location: "b", Index: 3, Header: c.header, Data: []byte(c.data)})
			if c.anyErr {
				if err == nil {
					t.Fatalf("want error, got %q", got)
				}
				if c.wantErr != nil && !errors.Is(err, c.wantErr) {
					t.Fatalf("want %v, got %v", c.wantErr, err)
				}
				return
			}
			if err != nil || len(got) != 1 || string(got[0]) != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
