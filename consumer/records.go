package consumer

import (
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
)

// This file is the part of delivery that `bucketq replay` shares with the
// consumer (package replay): how a fetched batch is decoded and split by its
// entry's metadata items, and how one record becomes events. Replayed
// events are then the delivered ones, byte for byte.

// RecordRange is the records [Start, End) of a batch that one metadata item
// of its entry describes.
type RecordRange struct {
	Header          format.Header
	Start, End      int
	IngestionTimeMs int64
}

// EntryRecords decodes a fetched batch (format.DecodeBatch, checksums
// first) and checks the entry's metadata items against its records, as
// delivery does; an error means the batch is corrupt.
func EntryRecords(e manifest.Entry, data []byte) ([][]byte, []RecordRange, error) {
	records, rs, err := decodeEntry(e, data)
	if err != nil {
		return nil, nil, err
	}
	out := make([]RecordRange, len(rs))
	for i, rg := range rs {
		out[i] = RecordRange{Header: rg.h, Start: rg.start, End: rg.end, IngestionTimeMs: rg.ingestMs}
	}
	return records, out, nil
}

func decodeEntry(e manifest.Entry, data []byte) ([][]byte, []metadataRange, error) {
	batch, err := format.DecodeBatch(data)
	if err != nil {
		return nil, nil, err
	}
	rs, err := ranges(e, len(batch.Records))
	if err != nil {
		return nil, nil, err
	}
	return batch.Records, rs, nil
}

// ConvertRecord converts record index of entry e item by item, and
// refuses output that no sink could send (checkEvents), as delivery does.
// An error wrapping convert.ErrNoConverter means no converter knows the
// header; failed lists items that could not be converted while the others
// were.
func ConvertRecord(conv convert.Converter, e manifest.Entry, h format.Header, ingestionTimeMs int64, index int, data []byte) ([]convert.Event, []convert.ItemError, error) {
	evs, failed, err := convert.ConvertItems(conv, convert.Record{
		Location: e.Location, Sequence: e.Sequence, Index: index, Header: h,
		IngestionTimeMs: ingestionTimeMs, Data: data,
	})
	if err == nil {
		err = checkEvents(evs)
	}
	return evs, failed, err
}
