// Package partition runs N independent queues in one bucket (RFC 0005):
// partition p is today's single queue — one manifest, data prefix and
// dead-letter prefix — under names derived from the configured ones, with
// partition 0 under exactly those names, so an existing bucket is partition
// 0 as it stands.
//
// It composes the single-queue pieces and changes none of them:
//
//   - Layout derives every partition's names and checks that no two
//     partitions share an object a GC could delete.
//   - Spreader is a producer.Appender over one producer.Producer per
//     partition. A spreader writes to one home partition (sticky, so group
//     commit keeps grouping) and falls over to another when its home
//     answers with errors or a conflict rate above a bound.
//   - Manager is the consumer side: it holds partition leases in one lease
//     table object in the bucket (conditional writes through cas.Store, no
//     coordinator), balances partitions over the live consumers and runs
//     one runner (a consumer.Consumer) per partition it holds. Leases
//     expire by observation: a member whose heartbeat has not changed for
//     the lease timeout on the observer's own clock is dead, so no two
//     machines' clocks are compared. Safety never rests on the lease: each
//     runner fences its partition's manifest (RFC 0002), so a consumer that
//     lost its lease and does not know it yet is refused its next dequeue.
package partition
