package partition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// tableVersion is the lease table's format version.
const tableVersion = 1

// maxTableBytes bounds the lease table a consumer reads: MaxPartitions
// owners and a few hundred members fit with room to spare.
const maxTableBytes = 4 << 20

// maxMembers bounds the members a table may list.
const maxMembers = 4096

// table is the lease table object (JSON, "{manifest}.leases"):
//
//	{"version":1,
//	 "members":{"host-a/123/9f2c":{"beat":17,"partitions":4},"host-b/77/01aa":{"beat":3,"partitions":4}},
//	 "owners":["host-a/123/9f2c","host-b/77/01aa","",...]}
//
// members are the live consumers with a heartbeat counter each raises on
// every write of the table; owners[p] is the member holding partition p, ""
// when it is free. The table only says who may run a partition; each
// partition's manifest epoch (RFC 0002) is what refuses a consumer that ran
// past its lease.
type table struct {
	Version int               `json:"version"`
	Members map[string]member `json:"members"`
	Owners  []string          `json:"owners"`
}

type member struct {
	Beat uint64 `json:"beat"`
	// Partitions is the member's partitions setting: it runs only
	// partitions below it, and balancing gives it no others (0: not
	// said, as by the first build).
	Partitions int `json:"partitions,omitempty"`
}

// errTableVersion is a lease table of another format version: written by a
// newer bucketq, so it is neither used nor replaced.
var errTableVersion = errors.New("lease table of another format version")

// decodeTable parses a lease table; the error names the offending field.
// Damage of any kind is an error; a table of another version is one
// wrapping errTableVersion.
func decodeTable(b []byte) (*table, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("lease table is empty (0 bytes), not a JSON object")
	}
	if len(b) > maxTableBytes {
		return nil, fmt.Errorf("lease table: %d bytes, more than the %d allowed", len(b), maxTableBytes)
	}
	var t table
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("lease table: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("lease table: data after the JSON object")
	}
	if t.Version != tableVersion {
		return nil, fmt.Errorf("lease table: field version is %d, want %d: %w", t.Version, tableVersion, errTableVersion)
	}
	if len(t.Owners) > MaxPartitions {
		return nil, fmt.Errorf("lease table: field owners has %d partitions, more than %d", len(t.Owners), MaxPartitions)
	}
	if len(t.Members) > maxMembers {
		return nil, fmt.Errorf("lease table: field members has %d members, more than %d", len(t.Members), maxMembers)
	}
	for id, mem := range t.Members {
		if id == "" {
			return nil, fmt.Errorf("lease table: field members has an empty member id")
		}
		if mem.Partitions < 0 || mem.Partitions > MaxPartitions {
			return nil, fmt.Errorf("lease table: field members[%q].partitions is %d, outside 0..%d", id, mem.Partitions, MaxPartitions)
		}
	}
	for p, o := range t.Owners {
		if _, ok := t.Members[o]; o != "" && !ok {
			return nil, fmt.Errorf("lease table: field owners[%d] is %q, which is not in members", p, o)
		}
	}
	if t.Members == nil {
		t.Members = map[string]member{}
	}
	return &t, nil
}

func (t *table) encode() []byte {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err) // maps of strings to structs of integers always marshal
	}
	return b
}

func (t *table) clone() *table {
	c := &table{Version: tableVersion, Members: make(map[string]member, len(t.Members)), Owners: slices.Clone(t.Owners)}
	for k, v := range t.Members {
		c.Members[k] = v
	}
	return c
}

// owned returns the partitions below n that id owns.
func (t *table) owned(id string, n int) []int {
	var out []int
	for p, o := range t.Owners {
		if p < n && o == id {
			out = append(out, p)
		}
	}
	return out
}
