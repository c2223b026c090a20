package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// FileConfig is the `import:` key of the bucketq config file:
//
//	import:
//	  source:            # objstore bucket config, the shape of object_store
//	    type: S3
//	    config: {bucket: exports, endpoint: ..., region: ...}
//	  format: auto        # auto | ndjson | csv | json
//	  max_row_bytes: 1048576
//	  checkpoint_window: 128 # see Config.CheckpointWindow
//	  mapping:            # for rows that are not CloudEvents (see Mapping)
//	    type: '"api-calls"'
//	    subject: row.customer_id
//	    time: row.timestamp
//	    data: {tokens: int(row.tokens)}
type FileConfig struct {
	Source           []byte // the source's objstore YAML; nil if absent
	Format           Format
	Mapping          *Mapping
	MaxRowBytes      int
	CheckpointWindow int // 0: DefaultCheckpointWindow
}

// ParseFileConfig parses the import key's YAML (nil: all defaults).
// Unknown keys are errors naming them.
func ParseFileConfig(b []byte) (FileConfig, error) {
	var raw struct {
		Source      yaml.Node `yaml:"source"`
		Format      string    `yaml:"format"`
		Mapping     *Mapping  `yaml:"mapping"`
		MaxRowBytes int       `yaml:"max_row_bytes"`
		Window      int       `yaml:"checkpoint_window"`
	}
	fc := FileConfig{Format: FormatAuto}
	if len(bytes.TrimSpace(b)) == 0 {
		return fc, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return fc, fmt.Errorf("import: %w (keys: source, format, mapping, max_row_bytes, checkpoint_window)", err)
	}
	var err error
	if fc.Format, err = ParseFormat(raw.Format); err != nil {
		return fc, fmt.Errorf("import.format: %w", err)
	}
	if raw.MaxRowBytes < 0 {
		return fc, fmt.Errorf("import.max_row_bytes: %d is negative", raw.MaxRowBytes)
	}
	fc.MaxRowBytes = raw.MaxRowBytes
	if raw.Window < 0 || raw.Window > 1<<16 {
		return fc, fmt.Errorf("import.checkpoint_window: %d; want 1 to 65536 (0: the default, %d)", raw.Window, DefaultCheckpointWindow)
	}
	fc.CheckpointWindow = raw.Window
	fc.Mapping = raw.Mapping
	if raw.Source.Kind != 0 {
		if raw.Source.Kind != yaml.MappingNode {
			return fc, fmt.Errorf("import.source: want a mapping with type and config, like object_store (line %d)", raw.Source.Line)
		}
		if fc.Source, err = yaml.Marshal(&raw.Source); err != nil {
			return fc, fmt.Errorf("import.source: %w", err)
		}
	}
	return fc, nil
}
