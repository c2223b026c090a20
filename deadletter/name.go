package deadletter

import (
	"fmt"
	"path"
	"strings"
)

// Reasons a dead letter is written: Letter.Reason and the reason label of
// buffer_entries_skipped use the same words.
const (
	// PoisonEvent: the sink refused the event alone (400, 413, 422).
	PoisonEvent = "poison_event"
	// ConvertError: the converter refused the record, or some of its
	// items (Letter.FailedItems).
	ConvertError = "convert_error"
	// UnknownSignal: no converter for the records' signal and encoding.
	UnknownSignal = "unknown_signal"
	// BatchMissing: the referenced batch object is gone.
	BatchMissing = "batch_missing"
	// BatchCorrupt: the batch, or its entry's metadata, does not decode;
	// its bytes are copied beside the marker (Letter.BatchCopy).
	BatchCorrupt = "batch_corrupt"
	// ImportRow: a source row bucketq import could not parse, map or
	// validate (written by package importer, under {prefix}/import/JOB/).
	ImportRow = "import_row"
	// ImportObject: a source object, or its tail from a row on, that
	// bucketq import could not read (a truncated gzip, broken JSON array).
	ImportObject = "import_object"
)

// Reasons are the reasons bucketq writes, in the order they are listed.
func Reasons() []string {
	return []string{PoisonEvent, ConvertError, UnknownSignal, BatchMissing, BatchCorrupt, ImportRow, ImportObject}
}

// KnownReason reports whether r is one of Reasons.
func KnownReason(r string) bool {
	for _, k := range Reasons() {
		if k == r {
			return true
		}
	}
	return false
}

// Dir is the folder of an entry's dead letters under prefix:
// <prefix>/<sequence, 20 digits>-<base name of location>, so folders list
// in sequence order.
func Dir(prefix string, sequence uint64, location string) string {
	base := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < 0x20 {
			return '_'
		}
		return r
	}, path.Base(location))
	return fmt.Sprintf("%s/%020d-%s", strings.TrimSuffix(prefix, "/"), sequence, base)
}

// Name is the object name of l under prefix, from its reason, sequence,
// location, record and event index: the same dead letter always has the
// same name.
//
//	poison_event    <dir>/poison-r<record:6>-e<event:4>.json
//	convert_error   <dir>/convert-r<record:6>.json
//	unknown_signal  <dir>/unknown_signal-r<first record:6>.json
//	batch_*         <dir>/<reason>.json
//	other           <dir>/<reason>-r<record:6>.json, or <dir>/<reason>.json without a record
func Name(prefix string, l Letter) string {
	dir := Dir(prefix, l.Sequence, l.Location)
	rec, ev := 0, 0
	if l.RecordIndex != nil {
		rec = *l.RecordIndex
	}
	if l.EventIndex != nil {
		ev = *l.EventIndex
	}
	switch l.Reason {
	case PoisonEvent:
		return fmt.Sprintf("%s/poison-r%06d-e%04d.json", dir, rec, ev)
	case ConvertError:
		return fmt.Sprintf("%s/convert-r%06d.json", dir, rec)
	case UnknownSignal:
		return fmt.Sprintf("%s/unknown_signal-r%06d.json", dir, rec)
	case BatchMissing, BatchCorrupt:
		return dir + "/" + l.Reason + ".json"
	}
	if l.RecordIndex != nil {
		return fmt.Sprintf("%s/%s-r%06d.json", dir, l.Reason, rec)
	}
	return dir + "/" + l.Reason + ".json"
}

// BatchCopyName is the name of the copy of an unreadable batch's bytes
// beside its marker: <dir>/<reason>.batch.
func BatchCopyName(prefix string, l Letter) string {
	return Dir(prefix, l.Sequence, l.Location) + "/" + l.Reason + ".batch"
}

// ReasonFromName is the reason Name gives an object, "" when the name
// does not say.
func ReasonFromName(name string) string {
	base := path.Base(name)
	switch {
	case strings.HasPrefix(base, "poison-"):
		return PoisonEvent
	case strings.HasPrefix(base, "convert-"):
		return ConvertError
	case strings.HasPrefix(base, "unknown_signal-"):
		return UnknownSignal
	case strings.HasPrefix(base, ImportRow+"-"):
		return ImportRow
	case strings.HasPrefix(base, ImportObject+"-"):
		return ImportObject
	case base == BatchMissing+".json":
		return BatchMissing
	case base == BatchCorrupt+".json":
		return BatchCorrupt
	}
	return ""
}
