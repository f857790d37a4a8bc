package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
	"github.com/twmb/franz-go/pkg/kgo"
)

var errR53Boom = errors.New("review53: boom")

// TestReview53TwoRuns ends a first run early in several ways and checks the
// committed offsets it leaves, then that a second member of the same group
// gets every record the first did not commit.
//
// Doc sentences checked (package doc, "Offsets"; Source; stage.Run):
//   - "The source commits, per partition, the lowest offset whose record is
//     not settled yet (or one past the last record it took, when all are
//     settled)" and "it also commits ... when the run stops": after run 1,
//     each partition's committed offset must be exactly the first offset run
//     1's sink did not commit (above it: a record lost; below: a settled
//     record not committed at the stop);
//   - "A record that failed (... a failed commit at the sink ...) holds the
//     watermark", "a panic in decode ... the record is not committed";
//   - "a record is committed only after what it led to was committed, so a
//     crash at any point loses nothing": run 2 sees every record not committed
//     by run 1's sink;
//   - stage.Run: "An item for which f returned nil or ErrStop is committed".
func TestReview53TwoRuns(t *testing.T) {
	const parts, perPart, k = 2, 20, 9
	modes := []string{"sinkerr", "stop", "cancel", "until", "sinkpanic", "decodepanic", "mapfail", "mapcancel"}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			_, addrs := newCluster(t, parts, "t")
			for p := range int32(parts) {
				produceTo(t, addrs, "t", p, int(p)*perPart, perPart)
			}
			group := "g-" + mode

			var decodePanicked atomic.Bool
			var decodeCalls atomic.Int64
			decode := func(r *kgo.Record) (int, error) {
				if mode == "decodepanic" && decodeCalls.Add(1) == k && decodePanicked.CompareAndSwap(false, true) {
					panic("review53 decode panic")
				}
				return decodeInt(r)
			}

			var mu sync.Mutex
			committed1 := map[string]bool{}
			commit := func(r kafka.Record[int]) {
				mu.Lock()
				committed1[place(r.Partition, r.Offset)] = true
				mu.Unlock()
			}
			parent, cancelParent := context.WithCancel(context.Background())
			defer cancelParent()
			stopCtx, drain := context.WithCancel(context.Background())
			defer drain()
			var mapCalls atomic.Int64
			src := stage.Until(kafka.Source(memberOpts(addrs, group, "t"), decode), stopCtx)
			mapped := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
				c := mapCalls.Add(1)
				if c == k && mode == "mapfail" {
					return r, errR53Boom
				}
				if c == k && mode == "mapcancel" {
					cancelParent()
					<-ctx.Done()
					return r, ctx.Err()
				}
				return r, nil
			}, stage.Workers(3))
			calls := 0
			watchdog1, cancelW1 := context.WithTimeout(parent, 90*time.Second)
			defer cancelW1()
			err1 := sink.ForEach(watchdog1, mapped, func(ctx context.Context, r kafka.Record[int]) error {
				calls++
				if calls == k {
					switch mode {
					case "sinkerr":
						return errR53Boom
					case "stop":
						commit(r)
						return stage.ErrStop
					case "cancel":
						cancelParent()
						return ctx.Err()
					case "until":
						drain()
					case "sinkpanic":
						panic("review53 sink panic")
					}
				}
				commit(r)
				return nil
			})
			if errors.Is(err1, context.DeadlineExceeded) {
				t.Fatalf("run 1 hung (watchdog): %v", err1)
			}
			switch mode {
			case "sinkerr", "mapfail":
				var se *stage.Error
				if !errors.Is(err1, errR53Boom) || !errors.As(err1, &se) {
					t.Errorf("run 1: got %v, want a *stage.Error wrapping errR53Boom", err1)
				}
			case "stop", "until":
				if err1 != nil {
					t.Errorf("run 1: got %v, want nil", err1)
				}
			case "cancel", "mapcancel":
				if !errors.Is(err1, context.Canceled) {
					t.Errorf("run 1: got %v, want context.Canceled", err1)
				}
			case "sinkpanic":
				var se *stage.Error
				if !errors.As(err1, &se) {
					t.Errorf("run 1: got %v, want a *stage.Error", err1)
				}
			case "decodepanic":
				var se *stage.SourceError
				var pe *stage.PanicError
				if !errors.As(err1, &se) || !errors.As(err1, &pe) {
					t.Errorf("run 1: got %v, want a *stage.SourceError wrapping a *stage.PanicError", err1)
				}
				if !decodePanicked.Load() {
					t.Errorf("decode never panicked")
				}
			}

			// The committed offsets must be exactly the first offset, per
			// partition, whose record run 1's sink did not commit.
			got := committedNow(t, addrs, group, "t", parts)
			for p := range int32(parts) {
				first := int64(0)
				for committed1[place(p, first)] && first < perPart {
					first++
				}
				want := first
				if first == 0 {
					want = -1 // nothing settled: no commit, or a commit of 0
				}
				c := got[p]
				switch {
				case c > first:
					t.Errorf("partition %d: committed %d, but offset %d was never committed by the sink (a loss)", p, c, first)
				case c != want && !(first == 0 && c == 0):
					t.Errorf("partition %d: committed %d at the stop, want %d (every record below it was committed by the sink)", p, c, first)
				}
			}

			// Run 2: every record above the committed offsets, and every record
			// run 1 did not commit, must come.
			wantSet := map[string]bool{}
			for p := range int32(parts) {
				for off := int64(0); off < perPart; off++ {
					if !committed1[place(p, off)] || off >= got[p] {
						wantSet[place(p, off)] = true
					}
				}
			}
			if len(wantSet) == 0 {
				t.Fatalf("run 1 committed everything; the test proves nothing")
			}
			seen := map[string]bool{}
			remaining := len(wantSet)
			ctx2, cancel2 := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel2()
			err2 := sink.ForEach(ctx2, kafka.Source(memberOpts(addrs, group, "t"), decodeInt), func(ctx context.Context, r kafka.Record[int]) error {
				pl := place(r.Partition, r.Offset)
				if wantSet[pl] && !seen[pl] {
					remaining--
				}
				seen[pl] = true
				if remaining == 0 {
					return stage.ErrStop
				}
				return nil
			})
			var missing []string
			for pl := range wantSet {
				if !seen[pl] {
					missing = append(missing, pl)
				}
			}
			if err2 != nil || len(missing) > 0 {
				t.Errorf("run 2 (after run 1 ended by %s with %v; committed %v): err %v; never redelivered: %v", mode, err1, fmt.Sprint(got), err2, missing)
			}
		})
	}
}
