// Package natsjs runs sluice pipelines on NATS JetStream: a source over a
// durable pull consumer, whose messages are acknowledged only once the sink
// has committed what they led to, and a sink that publishes with message
// ids, so that the server drops duplicates. Run the same pipeline in N
// processes on N machines against one consumer and they share the work,
// with at-least-once delivery; make the sink idempotent (a message id, an
// upsert, INSERT … ON CONFLICT DO NOTHING) and the effect is exactly once.
//
// # Outcomes
//
// Each message's fate maps to an acknowledgement (see stage.Ack):
//
//   - committed by the sink (or a duplicate it recognised, or dropped on
//     purpose by a Filter or a Handle policy): Ack;
//   - failed with a retryable error (a forwarded *stage.Error, a failed
//     commit, a FailFast error at this message): Nak with a delay that
//     grows with the delivery count;
//   - failed with an error wrapped by [Permanent], failed on its last
//     allowed delivery (MaxDeliver), or not decodable: Term, with the
//     error's text as its reason (the server's terminated advisory
//     carries it), after publishing it to the dead-letter subject if one
//     is set ([DeadLetter]);
//   - the run ended first (cancelled, a FailFast error at another message,
//     drained before the message was handed to the pipeline; or a commit
//     that failed with the context's error as the run ended): Nak, when the
//     run stops, so that another consumer gets it at once; after a crash,
//     nothing: the server redelivers it once AckWait has passed. (So too
//     for a message that nats.go dropped, after a stall or a reconnect,
//     for want of room: the run never received it; see Source.) A message
//     on its last allowed delivery (MaxDeliver) is not delivered again
//     after a Nak, so it goes to the dead-letter subject instead (Term), if
//     one is set; without one it stays in the stream, undelivered.
//
// # Consumer settings
//
// The consumer is yours to create; these settings matter:
//
//   - AckPolicy: AckExplicitPolicy (required; the source checks).
//   - AckWait: longer than an item takes from source to sink, or use
//     [KeepAlive] to send in-progress acks while it is on its way;
//     otherwise the server redelivers items still in flight. It is also how
//     long a crashed replica's messages wait before another replica gets
//     them.
//   - MaxAckPending: at least the messages one replica holds (its
//     [ReadAhead], 100 by default, plus the pipeline's own read-ahead: the
//     first stage's workers and buffers, and batch sizes) times the number
//     of replicas, or replicas starve. With replicas × ReadAhead well over
//     MaxAckPending, the first replicas to pull take all the work.
//   - MaxDeliver: the source terminates a message that fails on its last
//     delivery (to the dead-letter subject), so that poison does not
//     circulate. With MaxDeliver, set a dead-letter subject: a message
//     whose last delivery a run ends before processing goes there too;
//     without one it stays in the stream, undelivered.
//   - Retention: WorkQueuePolicy on the stream, so that acknowledged
//     messages are deleted and the stream's size is the work left.
//   - MaxRequestBatch and MaxRequestExpires: none, or what the source asks
//     within: a MaxRequestBatch below [ReadAhead] lowers the read-ahead to
//     it, and a MaxRequestExpires below 5 s shortens each pull request's
//     wait (below 1 s, which nats.go cannot ask for, a run fails at once).
//   - MaxRequestMaxBytes: any (the source asks by messages, not by bytes).
//
// A run reads MaxDeliver, MaxRequestBatch and MaxRequestExpires as it
// starts; change them between runs. One lowered under a running run:
// MaxRequestBatch or MaxRequestExpires below what the run asks makes the
// server refuse its pull requests, and the run fails at its next stall (a
// *stage.SourceError, once the subscription missed its heartbeats); a
// lower MaxDeliver is not seen, so a message that fails on its new last
// delivery is nak'ed rather than terminated and stays in the stream,
// undelivered.
package natsjs
