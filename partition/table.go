package partition

import (
	"bytes"
	"encoding/json"
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
//	 "members":{"host-a/123/9f2c":{"beat":17},"host-b/77/01aa":{"beat":3}},
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
}

// decodeTable parses a lease table; the error names the offending field.
func decodeTable(b []byte) (*table, error) {
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
		return nil, fmt.Errorf("lease table: field version is %d, want %d", t.Version, tableVersion)
	}
	if len(t.Owners) > MaxPartitions {
		return nil, fmt.Errorf("lease table: field owners has %d partitions, more than %d", len(t.Owners), MaxPartitions)
	}
	if len(t.Members) > maxMembers {
		return nil, fmt.Errorf("lease table: field members has %d members, more than %d", len(t.Members), maxMembers)
	}
	for id := range t.Members {
		if id == "" {
			return nil, fmt.Errorf("lease table: field members has an empty member id")
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
