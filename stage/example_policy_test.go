package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Retry a flaky call, with a deadline per attempt and at most 100 calls per
// second across the workers.
func ExampleRetry() {
	ctx := context.Background()
	var calls atomic.Int64
	fetch := func(ctx context.Context, id int) (string, error) {
		if calls.Add(1)%2 == 1 { // every other call fails
			return "", errors.New("503")
		}
		return "page " + strconv.Itoa(id), nil
	}
	pages := stage.Map(source.Slice([]int{1, 2, 3}), fetch,
		stage.Workers(1),
		stage.Retry(3, time.Millisecond),
		stage.Timeout(time.Second),
		stage.RateLimit(100, 10))

	got, err := sink.Slice(ctx, pages)
	fmt.Println(got, err, calls.Load(), "calls")
	// Output: [page 1 page 2 page 3] <nil> 6 calls
}

// SharedRateLimit: one budget of calls for a backend, shared by every run
// that calls it (here two requests, each a run of its own).
func ExampleSharedRateLimit() {
	backend := rate.NewLimiter(100, 3) // 100 calls a second, bursts of 3, for the whole process
	call := func(_ context.Context, q string) (string, error) { return "answer to " + q, nil }
	for _, request := range [][]string{{"a", "b"}, {"c", "d"}} {
		answers, err := sink.Slice(context.Background(), stage.Map(source.Slice(request), call,
			stage.Workers(2), stage.Ordered(), stage.SharedRateLimit(backend)))
		fmt.Println(answers, err)
	}
	// Output:
	// [answer to a answer to b] <nil>
	// [answer to c answer to d] <nil>
}

// RetryIf retries only what may succeed later: here not a 404.
func ExampleRetryIf() {
	errNotFound := errors.New("404")
	var calls atomic.Int64
	fetch := func(_ context.Context, path string) (string, error) {
		calls.Add(1)
		if path == "/gone" {
			return "", errNotFound
		}
		if calls.Load()%2 == 1 { // every other call is a 503
			return "", errors.New("503")
		}
		return "page " + path, nil
	}
	transient := func(err error) bool { return !errors.Is(err, errNotFound) }
	pages := stage.Map(source.Slice([]string{"/a", "/gone"}), fetch,
		stage.Workers(1), stage.RetryIf(3, time.Millisecond, transient), stage.OnError(stage.Forward))
	for page, err := range sink.All(context.Background(), pages) {
		var se *stage.Error
		if errors.As(err, &se) {
			fmt.Println(se.Input, "failed after", se.Attempts, "attempt:", se.Err)
			continue
		}
		fmt.Println(page)
	}
	// Output:
	// page /a
	// /gone failed after 1 attempt: 404
}

// A dead-letter queue: failed items go to the handler, the run goes on.
func ExampleHandle() {
	ctx := context.Background()
	var dead []string // calls of the handler never overlap: no lock needed
	deadLetter := stage.Handle(func(_ context.Context, e *stage.Error) error {
		dead = append(dead, fmt.Sprintf("%v: %v", e.Input, errors.Unwrap(e.Err)))
		return nil
	})
	nums := stage.Map(source.Slice([]string{"1", "x", "3", "y"}), func(_ context.Context, s string) (int, error) {
		return strconv.Atoi(s)
	}, stage.OnError(deadLetter))

	got, err := sink.Slice(ctx, nums)
	slices.Sort(got)
	slices.Sort(dead)
	fmt.Println(got, err)
	fmt.Println(dead)
	// Output:
	// [1 3] <nil>
	// [x: invalid syntax y: invalid syntax]
}

// Fail after N errors: tolerate one bad record, not two.
func ExampleBudget() {
	ctx := context.Background()
	parse := func(_ context.Context, s string) (int, error) { return strconv.Atoi(s) }

	_, err := sink.Count(ctx, stage.Map(source.Slice([]string{"1", "x", "3"}), parse, stage.OnError(stage.Budget(1, nil))))
	fmt.Println(err)
	_, err = sink.Count(ctx, stage.Map(source.Slice([]string{"1", "x", "y"}), parse, stage.OnError(stage.Budget(1, nil))))
	fmt.Println(errors.Is(err, stage.ErrBudget))
	// Output:
	// <nil>
	// true
}

// Per-key order: the events of one account apply one at a time, in order,
// while different accounts run in parallel.
func ExampleKeyBy() {
	ctx := context.Background()
	type deposit struct {
		account string
		amount  int
	}
	deposits := source.Slice([]deposit{{"ann", 10}, {"bob", 5}, {"ann", -3}, {"bob", 1}, {"ann", 4}})
	var mu sync.Mutex
	balance := map[string][]int{} // each account's running balances
	applied := stage.Map(deposits, func(_ context.Context, d deposit) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		h := balance[d.account]
		prev := 0
		if len(h) > 0 {
			prev = h[len(h)-1]
		}
		balance[d.account] = append(h, prev+d.amount)
		return d.account, nil
	}, stage.Workers(4), stage.KeyBy(func(d deposit) string { return d.account }))

	_, err := sink.Count(ctx, applied)
	fmt.Println(balance["ann"], balance["bob"], err)
	// Output: [10 7 11] [5 6] <nil>
}
