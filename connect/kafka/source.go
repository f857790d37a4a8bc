package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/internal/guard"
	"github.com/sluicedev/sluice/stage"
)

// Source returns a stream of the records of a consumer group, decoded by
// decode. Each run is one member of the group: when the pipeline first
// asks for a record, it makes a client from kopts (which name the seed
// brokers, the group with kgo.ConsumerGroup and the topics with
// kgo.ConsumeTopics), joins, takes records as the pipeline is ready for
// them, and commits offsets as the package documentation
// says ("Offsets"); when the run ends, it commits what is settled, leaves
// the group and closes the client. (A run that ends before it asks for a
// record, cancelled or drained at once, makes no client and never joins.)
// The source sets kgo.DisableAutoCommit, kgo.BlockRebalanceOnPoll (a
// rebalance waits the moment it takes to record a poll's records, so that
// none is credited to a later ownership of its partition) and the
// OnPartitions callbacks itself (options of kopts for them are
// overridden); kgo.AutoCommitMarks and kgo.GreedyAutoCommit in kopts make
// the run fail as it starts, with a *stage.SourceError, before it takes
// anything (franz-go refuses them beside DisableAutoCommit).
//
// Every record carries an acknowledgement (see stage.Ack): settle it by
// committing what it led to at the sink, or drop it on purpose. A record
// that decode rejects goes to the [DeadLetter] topic at once (without one,
// the run fails with a *stage.SourceError); a panic in decode fails the run
// with a *stage.SourceError wrapping a *stage.PanicError, and the record is
// not committed. kopts without a consumer group fail the run the same way.
// When the run ends while the member is joining the group, it returns once
// the join has finished (at most the group's rebalance timeout). It is a
// waiting source. Source panics if decode is nil or an option is the zero
// Option.
func Source[T any](kopts []kgo.Opt, decode func(*kgo.Record) (T, error), opts ...Option) stage.Stream[Record[T]] {
	if decode == nil {
		panic("sluice: kafka.Source: nil decode function")
	}
	cfg := defaults()
	for _, o := range opts {
		if o.apply == nil {
			panic("sluice: kafka.Source: zero Option")
		}
		o.apply(&cfg)
	}
	kopts = append([]kgo.Opt(nil), kopts...) // the caller may reuse its slice
	return stage.AckSource(func(ctx context.Context) (func(context.Context) (Record[T], stage.Ack, error), func()) {
		m := newMember(cfg)
		opened := false // next is never called concurrently
		next := func(ctx context.Context) (Record[T], stage.Ack, error) {
			if !opened {
				// At the first call, not at the run's open: a run that
				// ends before it takes anything starts no client, whose
				// goroutines (a connection being dialled) Close does not
				// wait for.
				opened = true
				m.open(kopts)
			}
			for {
				h, err := m.next(ctx)
				if err != nil {
					return Record[T]{}, nil, err
				}
				v, err := decode(h.rec)
				if err != nil {
					m.deadLetter(h, fmt.Errorf("decode: %w", err))
					if err := ctx.Err(); err != nil {
						// The run ended meanwhile: take no more records
						// (their offsets are not committed).
						return Record[T]{}, nil, err
					}
					continue
				}
				r := h.rec
				rec := Record[T]{Value: v, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key,
					Headers: r.Headers, Timestamp: r.Timestamp, Attempts: h.attempts}
				return rec, &recordAck{m: m, h: h}, nil
			}
		}
		return next, m.close
	})
}

// member is a Source in one run: one member of the group.
type member struct {
	cfg config
	cl  *kgo.Client

	mu    sync.Mutex
	err   error         // the run fails with it: next returns it
	parts map[tp]*part  // owned partitions
	ready []*held       // polled, in order, not taken yet
	again []*held       // failed, to be tried again first
	wake  func()        // ends the poll in progress, if any
	id    string        // the member id, once joined
	done  chan struct{} // closed at close: stops the committer

	// paused is the set of partitions paused in the client. Only next
	// reads or changes it, and changes the client's pauses (next is never
	// called concurrently): so the client's pauses change only between
	// polls, never during one that was sized for them (see room).
	paused    map[tp]bool
	commitMu  sync.Mutex // one commit at a time; a revoke's is the last for its partitions
	committer sync.WaitGroup
	eventMu   sync.Mutex // OnEvent calls one at a time
	// eventPanic is the first panic of the OnEvent function, which is then
	// called no more (under eventMu).
	eventPanic  *stage.PanicError
	eventGoexit bool // f was ended by runtime.Goexit: called no more either
}

func newMember(cfg config) *member {
	return &member{cfg: cfg, parts: map[tp]*part{}, done: make(chan struct{})}
}

// open makes the client and starts the periodic committer.
func (m *member) open(kopts []kgo.Opt) {
	// Clipped: kopts is the Source's, shared by its runs, which may run at
	// the same time; an append within its capacity would write this run's
	// hooks into the array the others read.
	kopts = append(slices.Clip(kopts),
		kgo.DisableAutoCommit(),
		// No rebalance between a poll's return and the recording of its
		// records (next calls AllowRebalance after each poll): else a
		// partition lost and assigned again meanwhile would get the old
		// ownership's records, past its committed offset, and its
		// watermark would pass records the new ownership never took.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(m.assigned),
		kgo.OnPartitionsRevoked(m.revoked),
		kgo.OnPartitionsLost(m.lost))
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		m.err = fmt.Errorf("kafka: %w", err)
		return
	}
	m.cl = cl
	m.committer.Add(1)
	go func() {
		defer m.committer.Done()
		t := time.NewTicker(m.cfg.interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.commit(context.Background(), nil)
			case <-m.done:
				return
			}
		}
	}()
}

// next returns the next record to hand to the pipeline, polling as needed.
func (m *member) next(ctx context.Context) (*held, error) {
	for {
		m.mu.Lock()
		if m.err != nil {
			err := m.err
			m.mu.Unlock()
			return nil, err
		}
		if h := m.take(); h != nil {
			m.mu.Unlock()
			return h, nil
		}
		room := m.room()
		pause, resume := m.pauseChanges()
		poll, cancel := context.WithCancel(ctx)
		m.wake = cancel
		m.mu.Unlock()
		m.applyPauses(pause, resume)
		if room == 0 { // every partition is full: wait for a settlement
			<-poll.Done()
			cancel()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		err := m.poll(ctx, poll, room)
		cancel()
		if err != nil {
			return nil, err
		}
	}
}

// poll polls up to room records and records them (see record). It allows
// rebalances again once done (see open), whatever the poll returned, and
// also if a hook of kopts that the poll runs panicked or called
// runtime.Goexit: else the client's Close would wait for ever.
func (m *member) poll(ctx, poll context.Context, room int) error {
	defer m.cl.AllowRebalance()
	return m.record(ctx, m.cl.PollRecords(poll, room))
}

// record adds the records of a poll to their partitions, or returns why
// the run cannot go on. No rebalance runs meanwhile (see open), so every
// partition that owns a record is the ownership the record was fetched for.
func (m *member) record(ctx context.Context, fetches kgo.Fetches) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if fetches.IsClientClosed() {
		return errors.New("kafka: client closed")
	}
	var ferr error
	fetches.EachError(func(t string, p int32, err error) {
		var session *kgo.ErrGroupSession
		switch {
		case errors.Is(err, context.Canceled), errors.As(err, &session):
			// Our own wake-up; or the group session ended (its
			// partitions are lost, see lost): the client joins again.
		case ferr == nil:
			ferr = fmt.Errorf("kafka: fetching %s/%d: %w", t, p, err)
		}
	})
	if ferr != nil {
		return ferr
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.wake = nil
	fetches.EachRecord(func(r *kgo.Record) {
		p := m.parts[tp{r.Topic, r.Partition}]
		if p == nil || !p.owned {
			return // not ours (any more): its new owner reads it
		}
		m.ready = append(m.ready, p.add(r))
		if p.size() >= m.cfg.maxPending {
			p.paused = true // in the client before the next poll
		}
	})
	return nil
}

// room is how many records a poll may bring: as many as the fullest
// partition not paused still has room for, so that no partition goes past
// MaxPending (a paused partition's records are not returned by polls); 0
// when every owned partition is paused. Called with mu held. The bound
// holds only if the client's pauses stay as they were when room was
// sized until the poll returns: a partition resumed during the poll could
// bring room records on top of the MaxPending it holds. So the client's
// pauses are changed by next alone, before each poll (see pauseChanges);
// a settlement changes only the member's state, and ends the poll.
func (m *member) room() int {
	room, owned := m.cfg.maxPending, 0
	for _, p := range m.parts {
		if !p.owned {
			continue
		}
		owned++
		if !p.paused {
			room = min(room, m.cfg.maxPending-p.size())
		}
	}
	if owned > 0 && m.allPaused() {
		return 0
	}
	return max(room, 1)
}

// allPaused reports whether every owned partition is paused. Called with mu
// held.
func (m *member) allPaused() bool {
	for _, p := range m.parts {
		if p.owned && !p.paused {
			return false
		}
	}
	return true
}

// take hands out the next record: one to try again first, then the next
// one polled; records of partitions no longer owned are skipped. Called
// with mu held.
func (m *member) take() *held {
	for len(m.again) > 0 || len(m.ready) > 0 {
		var h *held
		if len(m.again) > 0 {
			h, m.again = m.again[0], m.again[1:]
		} else {
			h, m.ready[0] = m.ready[0], nil
			m.ready = m.ready[1:]
		}
		if h.part.owned && !h.settled {
			h.attempts++
			return h
		}
	}
	return nil
}

// settle marks h settled; once its partition has room again, it is
// marked to be resumed, and the poll in progress, sized without it, ends
// so that next resumes it and polls again.
func (m *member) settle(h *held) {
	m.mu.Lock()
	p := h.part
	p.settle(h)
	resume := p.owned && p.paused && p.size() < m.cfg.maxPending
	if resume {
		p.paused = false
	}
	m.mu.Unlock()
	if resume {
		if resumeHook != nil {
			resumeHook()
		}
		m.nudge()
	}
}

// resumeHook, if set by a test, runs when a settlement gives a full
// partition room again, before the poll in progress is ended.
var resumeHook func()

// pauseChanges returns the partitions to pause and to resume in the
// client so that its pauses are what the member's state says: the owned
// partitions that are full. A partition let go is resumed, since pauses
// outlive assignments in the client and it may come back. Called with mu
// held, by next only (see paused).
func (m *member) pauseChanges() (pause, resume map[string][]int32) {
	for t, p := range m.parts {
		if p.owned && p.paused && !m.paused[t] {
			pause = addTP(pause, t)
		}
	}
	for t := range m.paused {
		if p := m.parts[t]; p == nil || !p.owned || !p.paused {
			resume = addTP(resume, t)
		}
	}
	return pause, resume
}

// applyPauses changes the client's pauses as pauseChanges said. Called by
// next only, outside mu.
func (m *member) applyPauses(pause, resume map[string][]int32) {
	if m.paused == nil {
		m.paused = map[tp]bool{}
	}
	if pause != nil {
		m.cl.PauseFetchPartitions(pause)
		for topic, ps := range pause {
			for _, p := range ps {
				m.paused[tp{topic, p}] = true
			}
		}
	}
	if resume != nil {
		m.cl.ResumeFetchPartitions(resume)
		for topic, ps := range resume {
			for _, p := range ps {
				delete(m.paused, tp{topic, p})
			}
		}
	}
}

// nudge ends the poll in progress, if any, so that next looks again: at
// records to try again, at a failure, at partitions that changed.
func (m *member) nudge() {
	m.mu.Lock()
	wake := m.wake
	m.mu.Unlock()
	if wake != nil {
		wake()
	}
}

// retry hands h to the pipeline again, before anything else.
func (m *member) retry(h *held) {
	m.mu.Lock()
	m.again = append(m.again, h)
	m.mu.Unlock()
	m.nudge() // a poll that waits for new records would hold it back
}

// fail makes the run fail with err.
func (m *member) fail(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
	}
	m.mu.Unlock()
	m.nudge()
}

// commit commits the watermark of every owned partition that moved (of
// only those in only, if not nil), and reports it.
func (m *member) commit(ctx context.Context, only map[tp]bool) {
	m.commitMu.Lock()
	defer m.commitMu.Unlock()
	m.commitLocked(ctx, only)
}

// commitLocked is commit for a caller that holds commitMu.
func (m *member) commitLocked(ctx context.Context, only map[tp]bool) {
	m.mu.Lock()
	offsets := map[string]map[int32]kgo.EpochOffset{}
	var parts []*part
	for t, p := range m.parts {
		if !p.owned || only != nil && !only[t] {
			continue
		}
		if eo, ok := p.watermark(); ok {
			if offsets[t.topic] == nil {
				offsets[t.topic] = map[int32]kgo.EpochOffset{}
			}
			offsets[t.topic][t.partition] = eo
			parts = append(parts, p)
		}
	}
	m.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	var cerr error
	m.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		cerr = commitError(resp, err)
	})
	if cerr == nil {
		m.mu.Lock()
		for _, p := range parts {
			p.committed = offsets[p.tp.topic][p.tp.partition].Offset
		}
		m.mu.Unlock()
	}
	m.event(Event{Kind: Committed, Offsets: plain(offsets), Err: cerr})
}

// assigned starts owning the partitions given.
func (m *member) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	m.mu.Lock()
	m.id, _ = cl.GroupMetadata()
	for topic, ps := range assigned {
		for _, p := range ps {
			m.parts[tp{topic, p}] = newPart(tp{topic, p})
		}
	}
	m.mu.Unlock()
	m.nudge() // a member whose partitions were all full waits: it has new ones
	m.event(Event{Kind: Assigned, Partitions: assigned})
}

// revoked commits the watermarks of the partitions given, then lets them
// go: nothing of theirs is taken or committed any more.
func (m *member) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	only := tpSet(revoked)
	m.commitMu.Lock() // no periodic commit may come after the last one
	m.commitLocked(ctx, only)
	m.letGo(only)
	m.commitMu.Unlock()
	m.event(Event{Kind: Revoked, Partitions: revoked})
}

// lost lets the partitions given go without a commit: the group has them
// already.
func (m *member) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	only := tpSet(lost)
	m.commitMu.Lock()
	m.letGo(only)
	m.commitMu.Unlock()
	m.event(Event{Kind: Lost, Partitions: lost})
}

// letGo stops owning the partitions in only.
func (m *member) letGo(only map[tp]bool) {
	m.mu.Lock()
	for t := range only {
		if p := m.parts[t]; p != nil {
			p.owned = false
			delete(m.parts, t)
		}
	}
	m.mu.Unlock()
	m.nudge() // next resumes them in the client (see pauseChanges)
}

// close runs once every goroutine of the run has exited: it commits what
// is settled, stops the committer, and closes the client, which leaves the
// group (after a join in progress has finished, which may take up to the
// group's rebalance timeout).
//
// The run's failure, if any, is raised once the client is closed, as a
// *stage.SourceError (see stage.Source): next may not have reported it
// (one after the run took its last record: a drain, the final commit's
// OnEvent, a dead letter given up), or the engine may have ended the
// stream quietly on it (a drain). A failure the run already reported
// changes nothing.
func (m *member) close() {
	if m.cl == nil {
		return
	}
	close(m.done)
	m.committer.Wait()
	m.commit(context.Background(), nil)
	m.cl.CloseAllowingRebalance() // no poll runs any more (see poll)
	m.mu.Lock()
	err := m.err
	m.mu.Unlock()
	if err != nil {
		panic(&stage.SourceError{Err: err})
	}
}

// event calls the OnEvent function, if any, one call at a time. It runs in
// the source's goroutines and in the client's (its partition callbacks),
// so a panic of the function must not escape: its first fails the run
// with a *stage.SourceError wrapping the *stage.PanicError (see fail), and
// the function is called no more.
func (m *member) event(e Event) {
	if m.cfg.onEvent == nil {
		return
	}
	m.mu.Lock()
	e.Member = m.id
	m.mu.Unlock()
	m.eventMu.Lock()
	defer m.eventMu.Unlock()
	if m.eventPanic != nil || m.eventGoexit {
		return
	}
	// f runs on a goroutine of its own, waited for: a runtime.Goexit in it
	// (t.Fatal) then ends that goroutine only, not the committer, a
	// rebalance callback or the sink's goroutine, which hold locks and the
	// client (a Goexit there hung the run or leaked the client). The run
	// fails with stage.ErrGoexit instead.
	var perr *stage.PanicError
	returned := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		if rec := guard.Call(func() { m.cfg.onEvent(e) }); rec != nil {
			perr = &stage.PanicError{Value: rec.Value, Stack: rec.Stack}
		}
		returned = true
	}()
	<-done
	switch {
	case perr != nil:
		m.eventPanic = perr
		m.fail(fmt.Errorf("kafka: OnEvent: %w", m.eventPanic))
	case !returned:
		m.eventGoexit = true
		m.fail(fmt.Errorf("kafka: OnEvent: %w", stage.ErrGoexit))
	}
}

// tpSet is the set of the partitions given.
func tpSet(parts map[string][]int32) map[tp]bool {
	set := map[tp]bool{}
	for topic, ps := range parts {
		for _, p := range ps {
			set[tp{topic, p}] = true
		}
	}
	return set
}

func addTP(set map[string][]int32, t tp) map[string][]int32 {
	if set == nil {
		set = map[string][]int32{}
	}
	set[t.topic] = append(set[t.topic], t.partition)
	return set
}

func plain(offsets map[string]map[int32]kgo.EpochOffset) map[string]map[int32]int64 {
	out := map[string]map[int32]int64{}
	for t, ps := range offsets {
		out[t] = map[int32]int64{}
		for p, eo := range ps {
			out[t][p] = eo.Offset
		}
	}
	return out
}

// commitError is the error of a commit: the request's, or the first
// partition's.
func commitError(resp *kmsg.OffsetCommitResponse, err error) error {
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("kafka: committing %s/%d: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}
