package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r41Plan is what item i's function does.
type r41Plan struct {
	size   int    // outputs of the successful (or only) attempt
	fail   string // "", "error" (after its outputs), "panic" (after its outputs)
	first  int    // with Retry and fail == "error": outputs of the failed first attempt
	key    int
	policy string
	retry  bool
}

// r41Acks records each item's Done calls and checks, at Done(nil), that
// every output the item led to was consumed by the sink.
type r41Acks struct {
	mu        sync.Mutex
	calls     []int
	errs      []error
	delivered []int
	want      []int // outputs of each item that reach the sink
	early     []string
}

type r41Ack struct {
	a *r41Acks
	i int
}

func (k r41Ack) Done(err error) {
	a := k.a
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls[k.i]++
	a.errs[k.i] = err
	if err == nil && a.delivered[k.i] != a.want[k.i] {
		a.early = append(a.early, fmt.Sprintf("item %d told Done(nil) with %d of its %d outputs consumed", k.i, a.delivered[k.i], a.want[k.i]))
	}
}

// TestReview41OrderedRandomExactlyOnce runs Ordered Applies of random shape
// (workers 1, 2, 3, 8 or unbounded; buffer 0, 1, 5 or huge; with or without
// KeyBy; Forward or Handle; with or without Retry) over items that emit
// random numbers of outputs (none, one, a few, far more than the window),
// some then failing (error or panic) after their outputs, with a sink that is
// now and then slow. Every output must arrive exactly once, in input order,
// each item's in emit order, failed attempts' outputs too ("Outputs that a
// failed attempt emitted stay emitted"), a forwarded error after its item's
// outputs ("Outputs emitted before an error still go downstream"); each item
// from the AckSource must be told Done exactly once, and Done(nil) only once
// its outputs were consumed ("an item from an AckSource is acknowledged once
// its outputs are committed").
func TestReview41OrderedRandomExactlyOnce(t *testing.T) {
	const rounds, n = 40, 120
	for round := range rounds {
		r := rand.New(rand.NewPCG(41, uint64(round)))
		workers := []int{1, 2, 3, 8, -1}[r.IntN(5)]
		buffer := []int{0, 1, 5, 1 << 20}[r.IntN(4)]
		keyed := r.IntN(3) == 0
		policy := []string{"forward", "handle"}[r.IntN(2)]
		retry := r.IntN(2) == 0
		window := 2*max(workers, 1) + buffer
		plans := make([]r41Plan, n)
		for i := range plans {
			p := &plans[i]
			p.policy, p.retry, p.key = policy, retry, r.IntN(4)
			switch r.IntN(6) {
			case 0:
				p.size = 0
			case 1:
				p.size = 1
			case 2:
				p.size = 3*min(window, 40) + r.IntN(50)
			default:
				p.size = r.IntN(min(window, 40) + 3)
			}
			switch r.IntN(8) {
			case 0:
				p.fail = "error"
				p.first = r.IntN(4)
			case 1:
				p.fail = "panic"
			}
		}
		name := fmt.Sprintf("round%d/workers%d/buffer%d/keyed=%v/%s/retry=%v", round, workers, buffer, keyed, policy, retry)
		t.Run(name, func(t *testing.T) { r41RunPlans(t, plans, workers, buffer, keyed, r.Uint64()) })
	}
}

func r41RunPlans(t *testing.T, plans []r41Plan, workers, buffer int, keyed bool, seed uint64) {
	n := len(plans)
	acks := &r41Acks{calls: make([]int, n), errs: make([]error, n), delivered: make([]int, n), want: make([]int, n)}
	var want []r41Out
	for i, p := range plans {
		switch {
		case p.fail == "error" && p.retry:
			for j := range p.first {
				want = append(want, r41Out{i, j, 1})
			}
			for j := range p.size {
				want = append(want, r41Out{i, j, 2})
			}
		default:
			for j := range p.size {
				want = append(want, r41Out{i, j, 1})
			}
			if p.fail != "" && p.policy == "forward" {
				want = append(want, r41Out{i, -1, 0})
			}
		}
	}
	for _, o := range want {
		if o.j >= 0 {
			acks.want[o.i]++
		}
	}
	next := 0
	src := stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
		return func(ctx context.Context) (int, stage.Ack, error) {
			if next == n {
				return 0, nil, errEOF
			}
			next++
			return next - 1, r41Ack{acks, next - 1}, nil
		}, nil
	})
	var attempts sync.Map
	opts := []stage.Option{stage.Workers(workers), stage.Buffer(buffer), stage.Ordered()}
	if keyed {
		opts = append(opts, stage.KeyBy(func(v int) int { return plans[v].key }))
	}
	if plans[0].policy == "forward" {
		opts = append(opts, stage.OnError(stage.Forward))
	} else {
		opts = append(opts, stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error { return nil })))
	}
	if plans[0].retry {
		opts = append(opts, stage.Retry(2, 0))
	}
	s := stage.Apply(src, func(ctx context.Context, v int, emit func(r41Out) bool) error {
		a, _ := attempts.LoadOrStore(v, new(int))
		*a.(*int)++
		attempt := *a.(*int)
		p := plans[v]
		r37Jitter()
		size := p.size
		if p.fail == "error" && p.retry && attempt == 1 {
			size = p.first
		}
		for j := range size {
			if j%7 == 3 {
				r37Jitter()
			}
			if !emit(r41Out{v, j, attempt}) {
				return ctx.Err()
			}
		}
		switch {
		case p.fail == "error" && (!p.retry || attempt == 1):
			return errR41
		case p.fail == "panic":
			panic(errR41)
		}
		return nil
	}, opts...)
	var got []r41Out
	var err error
	r := rand.New(rand.NewPCG(seed, 1))
	slow := r.IntN(2) == 0
	hangGuard(t, func() {
		for o, e := range sink.All(context.Background(), s) {
			if e != nil {
				var se *stage.Error
				if !errors.As(e, &se) || !errors.Is(e, errR41) {
					err = e
					break
				}
				got = append(got, r41Out{se.Input.(int), -1, 0})
				continue
			}
			got = append(got, o)
			acks.mu.Lock()
			acks.delivered[o.i]++
			acks.mu.Unlock()
			if slow && r.IntN(16) == 0 {
				r37Jitter()
			}
		}
	})
	if err != nil {
		t.Fatalf("the run failed: %v", err)
	}
	r41SameOutputs(t, got, want)
	acks.mu.Lock()
	defer acks.mu.Unlock()
	for _, e := range acks.early {
		t.Error(e)
	}
	for i, p := range plans {
		wantErr := p.fail == "panic" && p.policy == "forward" || p.fail == "error" && !p.retry && p.policy == "forward"
		switch {
		case acks.calls[i] != 1:
			t.Errorf("item %d (%+v) told Done %d times", i, p, acks.calls[i])
		case wantErr != (acks.errs[i] != nil):
			t.Errorf("item %d (%+v) told Done(%v)", i, p, acks.errs[i])
		}
	}
}
