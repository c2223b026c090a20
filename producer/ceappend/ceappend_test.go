package ceappend_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/producer/ceappend"
)

type recorder struct {
	h       format.Header
	records [][]byte
}

func (r *recorder) Append(_ context.Context, h format.Header, recs [][]byte) error {
	r.h = h
	for _, b := range recs {
		r.records = append(r.records, append([]byte(nil), b...))
	}
	return nil
}

func newEvent(id string) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("billing")
	e.SetType("api-calls")
	e.SetSubject("customer-1")
	_ = e.SetData(event.ApplicationJSON, map[string]any{"tokens": 12})
	return e
}

func TestAppendEventsStoresFrontDoorRecords(t *testing.T) {
	rec := &recorder{}
	a := ceappend.New(rec)
	a.Now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	withTime := newEvent("b")
	withTime.SetTime(time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC))
	if err := a.AppendEvents(context.Background(), newEvent("a"), withTime); err != nil {
		t.Fatal(err)
	}
	if rec.h != format.EventsHeader {
		t.Fatalf("header %v, want EventsHeader", rec.h)
	}
	want := []struct{ id, time string }{{"a", "2026-01-02T03:04:05Z"}, {"b", "2025-05-06T07:08:09Z"}}
	if len(rec.records) != len(want) {
		t.Fatalf("%d records, want %d", len(rec.records), len(want))
	}
	for i, w := range want {
		var m map[string]any
		if err := json.Unmarshal(rec.records[i], &m); err != nil {
			t.Fatal(err)
		}
		if m["id"] != w.id || m["time"] != w.time || m["specversion"] != "1.0" || m["subject"] != "customer-1" {
			t.Errorf("record %d = %s", i, rec.records[i])
		}
		if d, _ := m["data"].(map[string]any); d["tokens"] != float64(12) {
			t.Errorf("record %d data = %v", i, m["data"])
		}
	}
}

func TestAppendEventsRefusesInvalid(t *testing.T) {
	noSubject := newEvent("x")
	noSubject.SetSubject("")
	noID := newEvent("")
	arrayData := newEvent("y")
	_ = arrayData.SetData(event.ApplicationJSON, []int{1})
	for name, tc := range map[string]struct {
		ev   event.Event
		want string
	}{
		"no subject": {noSubject, `subject`},
		"no id":      {noID, "id"},
		"array data": {arrayData, "data"},
	} {
		t.Run(name, func(t *testing.T) {
			rec := &recorder{}
			err := ceappend.New(rec).AppendEvents(context.Background(), newEvent("ok"), tc.ev)
			if err == nil || !strings.Contains(err.Error(), "event[1]") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming event[1] and %q", err, tc.want)
			}
			if len(rec.records) != 0 {
				t.Fatal("records appended despite an invalid event")
			}
		})
	}
}
