// Package kafka runs sluice pipelines on Kafka consumer groups: a source
// whose records are processed concurrently, in key order if you like, with
// offsets committed only when it is safe, and a sink that produces with
// keys and counts an item done only once the broker confirmed it.
//
// # Offsets
//
// Kafka commits one offset per partition: "everything before this offset is
// done". A consumer that processes a partition's records concurrently
// finishes them out of order, so committing the offset of a finished record
// could pass one still running, and a crash would lose it. The source
// commits, per partition, the lowest offset whose record is not settled yet
// (or one past the last record it took, when all are settled): a watermark
// below which every record was acknowledged by the sink (see stage.Ack),
// dropped on purpose (a Filter, a Handle policy), or sent to the dead-letter
// topic. A record that failed (a forwarded *stage.Error, a failed commit at
// the sink, or a stage's policy that ended the run at it: a FailFast error, a
// Handle or Budget policy's error; not a commit cut short by the run's end,
// which stays uncommitted like any record the run did not finish: see
// stage.Ack) holds the watermark: it is tried again, up to [Attempts] times,
// then sent to the [DeadLetter] topic; without one, the run fails, so that
// nothing is ever skipped silently. A failure that ends the run (a failed
// commit at the sink, a policy's) leaves no run to try the record again: on
// its last attempt it goes to the dead-letter topic, which settles it;
// otherwise it stays uncommitted, and the next owner of its partition gets it
// again. A record that does not decode goes to the dead-letter topic at once
// (or fails the run).
//
// Every [CommitInterval] (1 s by default) the source commits the watermarks
// that moved since its last commit of the partition (the first commit of a
// partition it owns is its watermark as it stands, even if nothing was
// settled yet, once a record of it was polled: nothing is committed for a
// partition before); it also commits when a partition is revoked (before it is
// given up) and when the run stops. A commit the broker refuses does not fail
// the run: the [Committed] event (see [OnEvent]) carries its error, and the
// next commit tries the watermark again. Each partition holds at most
// [MaxPending] records from its watermark on (taken by the pipeline, waiting
// to be tried again, polled and waiting, or settled behind one that is not);
// when it is full, its fetches pause until the watermark moves, so
// memory stays bounded however slow one record is, and so does what the
// next owner repeats.
//
// A record that fails while the run drains (stage.Until) is not tried
// again: the run takes nothing more. It stays uncommitted, and the next
// owner of its partition gets it again. The source adds no error of its own
// for it: the run's result is what the sink makes of the failure (under
// stage.Forward, the sink's *sink.ForwardedError, as for any failed item).
// (A record that fails its last attempt then goes to the dead-letter topic,
// or fails the run without one, as at any time.) (The drain reaches a call of the
// source already waiting for a record through its context, a moment after
// Until's stop context is done: a record that fails in that moment may be handed to that
// call and tried once more; it is committed only if that try succeeds.) A dead letter is written with a
// synchronous produce from the goroutine that settled the record (a worker
// or the sink's; the source's own for a record decode rejected), waiting up
// to 30 s for the broker, even when the run is aborted meanwhile: a run
// ends only once its dead letters in flight were confirmed or gave up. One
// that gives up (the 30 s passed, or the broker refused it) fails the run
// (unless the run was cut short first: a cancellation, an early stop), and
// its record is not committed: the next owner of its partition gets it
// again (and the dead letter may still be written later: a duplicate, as
// at-least-once allows).
//
// # Ordering
//
// Kafka orders records within a partition. A stage over the source chooses
// what it keeps with stage.KeyBy:
//
//   - stage.KeyBy(kafka.ByKey[T]): records of one key (within a
//     partition) one at a time, in offset order; different keys in
//     parallel. The mode to use unless you know better: one slow record
//     holds back only its key, until [MaxPending] records of its partition
//     have passed it (then the partition waits for it).
//   - stage.KeyBy(kafka.ByPartition[T]): a partition's records one at a
//     time, in offset order, as a classic consumer does.
//   - no KeyBy: no order at all; the most parallel.
//
// A record that waits for its key holds one of the stage's read-ahead
// places (see stage.KeyBy): give the stage a Buffer near [MaxPending], so
// that the records of one slow key waiting behind it do not use up the
// places the other keys need. A record tried again after a failure comes
// back after the records taken meanwhile, so it is the one exception to the
// order: which of its key's later records pass it depends on how far the
// stage had read ahead when it failed, so a sink that needs a key's records
// in offset order must not rely on a failure being tried again in place.
//
// # Rebalances
//
// When a partition is revoked, the source takes no more of its records,
// commits its watermark, and never commits for it again: acknowledgements
// of its records still in flight are ignored (the records may still finish;
// the new owner gets them again from the watermark), and so are the failure
// of a dead letter of one of them and decode's rejection of a record whose
// partition was revoked while decode ran (no dead letter, no failure: the
// new owner decodes it again). When the group session
// is lost (the member was too slow to heartbeat), its partitions are let go
// without a commit and the member joins again; the run goes on. A
// partition newly assigned starts from its committed offset, and is read
// even while every other partition of the member is full. With
// cooperative rebalancing (franz-go's default), an [OnEvent] Assigned or
// Revoked event may name no partition.
//
// # Guarantees and limits
//
// At-least-once: a record is committed only after what it led to was
// committed, so a crash at any point loses nothing; with an idempotent
// sink (a primary key, an upsert) the effect is exactly once. Records after
// the watermark are processed again after a crash or a rebalance, so a
// slow or failing record makes the next owner repeat up to MaxPending
// records of its partition. Per-key order holds within one ownership of a
// partition; across a rebalance, even one that gives the partition back to
// the same member, the new ownership may process a key's record while the
// old one still finishes an earlier one.
//
// A run makes its own client, at its first take, and closes it before the
// sink returns (see Source). franz-go's Client.Close may return while one
// of the client's connection goroutines is still closing its socket: that
// goroutine ends by itself, holding nothing of the run; every goroutine of
// sluice's has exited.
package kafka
