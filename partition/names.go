package partition

import (
	"fmt"

	"github.com/bucketq/bucketq/internal/objname"
)

// MaxPartitions bounds the partition count: suffixes have four digits.
const MaxPartitions = 10000

// Layout names one queue's objects: its manifest, the prefix of its batch
// files and the prefix of its dead letters. Journal prefixes (RFC 0004)
// take the same suffix through Suffix.
type Layout struct {
	Manifest   string
	Data       string
	DeadLetter string
}

// Suffix returns name for partition 0 and name-{p %04d} for p ≥ 1: suffixing
// the last segment, not adding a path level, keeps the data prefixes of
// different partitions disjoint ("ingest/data" does not contain
// "ingest/data-0003") and never asks a directory bucket to hold a file and a
// directory of one name.
func Suffix(name string, p int) string {
	if p == 0 {
		return name
	}
	return fmt.Sprintf("%s-%04d", name, p)
}

// Partition returns the layout of partition p of the queue whose partition 0
// is l.
func (l Layout) Partition(p int) Layout {
	return Layout{Manifest: Suffix(l.Manifest, p), Data: Suffix(l.Data, p), DeadLetter: Suffix(l.DeadLetter, p)}
}

// LeasePath is the lease table of the partitions whose partition 0 has the
// manifest at manifest: "{manifest}.leases".
func LeasePath(manifest string) string { return manifest + ".leases" }

// Check validates n partitions of l: 1 ≤ n ≤ MaxPartitions, and no object of
// one partition (or the lease table) lies under a data prefix of any
// partition, where GC deletes what its manifest does not list, nor under a
// dead-letter prefix; and no two partitions' prefixes overlap. Errors name
// the partitions and names at fault.
func (l Layout) Check(n int) error {
	if n < 1 || n > MaxPartitions {
		return fmt.Errorf("partitions: %d is outside 1..%d", n, MaxPartitions)
	}
	// A suffix is "-" and four digits at the very end of a name, so a name
	// of partition a ≥ 1 lies under a prefix of partition b ≥ 1 only if
	// partition 0's name already lies under partition b's prefix, or a = b
	// and the base names collide. Checking partition 0 against every
	// partition, both ways round, is therefore complete, in O(n).
	for i := range n {
		for _, pair := range [][2]int{{0, i}, {i, 0}} {
			if err := l.checkPair(pair[0], pair[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkPair checks the names of partition a against the prefixes of
// partition b.
func (l Layout) checkPair(a, b int) error {
	la, lb := l.Partition(a), l.Partition(b)
	for _, name := range []string{la.Manifest, la.Data, la.DeadLetter} {
		if err := objname.Check(name); err != nil {
			return fmt.Errorf("partition %d: %w", a, err)
		}
	}
	lease := LeasePath(l.Manifest)
	switch {
	case objname.Within(la.Manifest, lb.Data):
		return fmt.Errorf("partition %d manifest %q is under partition %d data prefix %q, where GC deletes objects", a, la.Manifest, b, lb.Data)
	case objname.Within(lease, lb.Data) || objname.Within(lease, lb.DeadLetter):
		return fmt.Errorf("lease table %q is under partition %d data or dead-letter prefix (%q, %q)", lease, b, lb.Data, lb.DeadLetter)
	case objname.Overlap(la.DeadLetter, lb.Data):
		return fmt.Errorf("partition %d dead-letter prefix %q overlaps partition %d data prefix %q, where GC deletes objects", a, la.DeadLetter, b, lb.Data)
	case a != b && objname.Overlap(la.Data, lb.Data):
		return fmt.Errorf("partitions %d and %d data prefixes overlap (%q, %q): each GC would delete the other's batches", a, b, la.Data, lb.Data)
	case a != b && la.Manifest == lb.Manifest:
		return fmt.Errorf("partitions %d and %d have the same manifest %q", a, b, la.Manifest)
	}
	return nil
}

func itoa(p int) string { return fmt.Sprint(p) }

// Choose returns the partitions a command acting on one partition or on
// all of them works on: p < 0 is every partition 0..n-1, p ≥ 0 is p alone,
// which must be below n. Refusing p ≥ n keeps a command from writing a
// queue no consumer configured with n partitions takes (import), or from
// repairing an object outside the configured layout.
func Choose(n, p int) ([]int, error) {
	if n < 1 || n > MaxPartitions {
		return nil, fmt.Errorf("partitions: %d is outside 1..%d", n, MaxPartitions)
	}
	if p >= n {
		return nil, fmt.Errorf("partition %d is not below partitions %d (partitions are 0 to %d; set partitions as producers and consumers have it)", p, n, n-1)
	}
	if p >= 0 {
		return []int{p}, nil
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	return all, nil
}
