package convert

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/bucketq/bucketq/format"
)

// TestConvertItemsFallsBackToConvert: a converter without ConvertItems
// converts whole (Item = event index, nothing failed), and an unregistered
// signal is ErrNoConverter on the item path too.
func TestConvertItemsFallsBackToConvert(t *testing.T) {
	reg := NewRegistry()
	rec := Record{Location: "l", Index: 3, Header: format.EventsHeader, Data: []byte(` {"id":"a"} `)}
	evs, failed, err := reg.ConvertItems(rec)
	if err != nil || len(failed) != 0 || len(evs) != 1 || evs[0].Item != 0 || string(evs[0].JSON) != `{"id":"a"}` {
		t.Fatalf("pass-through: events %v, failed %v, err %v", evs, failed, err)
	}
	rec.Data = []byte("[1]")
	if evs, failed, err = reg.ConvertItems(rec); err == nil || len(evs) != 0 || len(failed) != 0 {
		t.Errorf("not an object: events %v, failed %v, err %v; want the Convert error", evs, failed, err)
	}
	rec.Header = format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf)
	if _, _, err = reg.ConvertItems(rec); !errors.Is(err, ErrNoConverter) {
		t.Errorf("unregistered signal: err %v, want ErrNoConverter", err)
	}
	reg.Register(format.SignalLogs, format.EncodingOTLPProtobuf, twoEvents{})
	evs, _, err = reg.ConvertItems(rec)
	if err != nil || len(evs) != 2 || evs[0].Item != 0 || evs[1].Item != 1 {
		t.Errorf("plain converter: events %v, err %v; want items 0 and 1", evs, err)
	}
}

type twoEvents struct{}

func (twoEvents) Convert(Record) ([]json.RawMessage, error) {
	return []json.RawMessage{json.RawMessage(`{}`), json.RawMessage(`{}`)}, nil
}
