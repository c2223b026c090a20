package partition

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

const goodTable = `{"version":1,"members":{"a":{"beat":3},"b":{"beat":9}},"owners":["a","b","",""]}`

// TestDecodeTableDamage: every damaged or hand-edited lease table is an
// error naming what is wrong, never a panic or a silently odd table.
func TestDecodeTableDamage(t *testing.T) {
	flipped := []byte(goodTable)
	flipped[strings.Index(goodTable, `["a"`)+2] ^= 0x02 // owners[0] "a" → "c"
	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", "lease table is empty (0 bytes)"},
		{"whitespace", "  \n", "lease table: EOF"},
		{"truncated", goodTable[:len(goodTable)/2], "lease table: unexpected EOF"},
		{"truncated after object key", `{"version":1,"members":`, "lease table: unexpected EOF"},
		{"bit-flipped owner", string(flipped), `field owners[0] is "c", which is not in members`},
		{"bit-flipped brace", "[" + goodTable[1:], "lease table: invalid character ':' after array element"},
		{"not JSON", "leases!", "lease table: invalid character 'l'"},
		{"null", "null", "lease table: field version is 0, want 1"},
		{"unknown field", `{"version":1,"members":{},"owners":[],"epoch":3}`, `unknown field "epoch"`},
		{"newer version", `{"version":2,"members":{},"owners":[]}`, "field version is 2, want 1"},
		{"negative beat", `{"version":1,"members":{"a":{"beat":-1}},"owners":["a"]}`, "cannot unmarshal number -1 into Go struct field member.members.beat of type uint64"},
		{"beat not a number", `{"version":1,"members":{"a":{"beat":"x"}},"owners":["a"]}`, "members.beat of type uint64"},
		{"owner not a member", `{"version":1,"members":{"a":{"beat":1}},"owners":["a","zz"]}`, `field owners[1] is "zz", which is not in members`},
		{"member partitions negative", `{"version":1,"members":{"a":{"beat":1,"partitions":-4}},"owners":[]}`, `field members["a"].partitions is -4, outside 0..10000`},
		{"empty member id", `{"version":1,"members":{"":{"beat":1}},"owners":[]}`, "field members has an empty member id"},
		{"owners not strings", `{"version":1,"members":{},"owners":[1]}`, "owners of type string"},
		{"too many partitions", `{"version":1,"members":{},"owners":[` + strings.Repeat(`"",`, MaxPartitions) + `""]}`, "field owners has 10001 partitions, more than 10000"},
		{"data after the object", goodTable + `{}`, "data after the JSON object"},
		{"too large", `{"version":1,"members":{},"owners":[` + strings.Repeat(" ", maxTableBytes) + `]}`, "more than the 4194304 allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := decodeTable([]byte(tc.in))
			if err == nil {
				t.Fatalf("decoded %+v, want an error containing %q", tb, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if got := errors.Is(err, errTableVersion); got != strings.Contains(tc.want, "field version") {
				t.Fatalf("errors.Is(%v, errTableVersion) = %v", err, got)
			}
		})
	}
	if _, err := decodeTable([]byte(goodTable)); err != nil {
		t.Fatalf("the good table: %v", err)
	}
}

// TestLeaseTableDamagedIsReplaced: a consumer that finds the lease table
// damaged (truncated, bit-flipped, emptied, hand-edited) replaces it —
// counted and logged — and holds its partitions, instead of every consumer
// stalling; safety rests on the manifests' epochs, not on the table.
func TestLeaseTableDamagedIsReplaced(t *testing.T) {
	for _, damaged := range []string{"", goodTable[:20], "[" + goodTable[1:], `{"version":1,"members":{},"owners":["ghost"]}`, "\x00\x01binary"} {
		store := memstore.New()
		ctx := context.Background()
		if _, err := store.WriteIf(ctx, leaseTable, []byte(damaged), ""); err != nil {
			t.Fatal(err)
		}
		m := newTestManager(t, store, "a", 3, newClock())
		if err := m.tick(ctx); err != nil {
			t.Fatalf("table %q: tick: %v", damaged, err)
		}
		if got := m.Held(); !slices.Equal(got, []int{0, 1, 2}) {
			t.Fatalf("table %q: held %v after replacing it, want all", damaged, got)
		}
		if n := testutil.ToFloat64(m.m.TableErrors); n != 1 {
			t.Fatalf("table %q: partition_lease_table_errors %v, want 1", damaged, n)
		}
		if tb := readTable(t, store); tb.Members["a"].Beat != 1 {
			t.Fatalf("table %q: replaced by %+v", damaged, tb)
		}
	}
}

// TestLeaseTableOtherVersionLeftAlone: a table of another format version
// (a newer bucketq) is neither used nor overwritten; the consumer holds
// nothing and the error names the table and the field.
func TestLeaseTableOtherVersionLeftAlone(t *testing.T) {
	store := memstore.New()
	ctx := context.Background()
	newer := []byte(`{"version":2,"members":{},"owners":[]}`)
	if _, err := store.WriteIf(ctx, leaseTable, newer, ""); err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, store, "a", 2, newClock())
	err := m.tick(ctx)
	if err == nil || !strings.Contains(err.Error(), leaseTable) || !strings.Contains(err.Error(), "field version is 2, want 1") {
		t.Fatalf("tick = %v, want an error naming %s and the version field", err, leaseTable)
	}
	if len(m.Held()) != 0 {
		t.Fatalf("holds %v from a table it cannot read", m.Held())
	}
	if b, _, _ := store.Read(ctx, leaseTable); !bytes.Equal(b, newer) {
		t.Fatalf("table overwritten: %s", b)
	}
}

// TestLeaseTableWiderThanPartitions: a table naming partitions beyond this
// consumer's partitions (another consumer configured with more, or a
// lowered count) is counted and logged; this consumer serves its own
// partitions and leaves the others' owners alone.
func TestLeaseTableWiderThanPartitions(t *testing.T) {
	store := memstore.New()
	clk := newClock()
	wide := newTestManager(t, store, "w", 6, clk)
	narrow := newTestManager(t, store, "n", 2, clk)
	tick(t, wide, narrow, wide, narrow)
	if n := testutil.ToFloat64(narrow.m.TableErrors); n != 1 {
		t.Fatalf("partition_lease_table_errors %v, want 1 (once per table size)", n)
	}
	tb := readTable(t, store)
	if len(tb.Owners) != 6 {
		t.Fatalf("owners %q: the narrow consumer shrank the table", tb.Owners)
	}
	for p, o := range tb.Owners[2:] {
		if o != "w" {
			t.Fatalf("partition %d owned by %q, want the wide consumer w", p+2, o)
		}
	}
	for _, p := range narrow.Held() {
		if p >= 2 {
			t.Fatalf("narrow consumer holds partition %d beyond its partitions: 2", p)
		}
	}
}

var _ cas.Store = memstore.New()
