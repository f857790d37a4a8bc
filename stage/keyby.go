package stage

import (
	"fmt"
	"sync"

	"github.com/sluicedev/sluice/internal/guard"
)

// KeyBy gives the stage per-key order: items for which key returns the same
// value are processed one at a time, in the order the stage takes them from
// its input, while items of different keys run in parallel. The stage's
// other options hold: at most Workers(n) calls at once, and an item waiting
// for its key holds one of the stage's read-ahead places, so the stage still
// takes at most workers+buffer items ahead of its consumer
// (2×workers+buffer when it is [Ordered]: its window; memory stays
// bounded even if every item has the same key; the stage then runs one call
// at a time). A worker that finishes an item takes the next waiting item of
// the same key itself. Keys compare as == does: a key that is not equal
// to itself (a float NaN, or a key holding one) matches no other, so its
// item runs as if its key were its own.
//
// key is called once per item, from several workers at once: make it a
// pure function of the item (a field, an id). A panic in key fails the item
// as a panic in the stage's function does: an *[Error] wrapping a
// *[PanicError] goes to the stage's policy (the item's function is not
// called). Forwarded errors pass through without a key. Outputs leave in completion order unless the stage
// is [Ordered]; with Ordered, the outputs follow the input order across keys
// too. KeyBy turns off the running of the stage in its consumer's goroutines
// (see [Workers]). The stage panics when it is built if its input type is
// not T; KeyBy panics if key is nil.
func KeyBy[T any, K comparable](key func(T) K) Option {
	checkFunc(key == nil, "stage.KeyBy", "key function")
	return Option{apply: func(c *config, _ int) { c.key = keyFunc[T, K](key) }}
}

// keyer is a KeyBy key function for input type T, with its key type hidden.
type keyer[T any] interface {
	newGate() gate[T]
}

type keyFunc[T any, K comparable] func(T) K

func (k keyFunc[T, K]) newGate() gate[T] {
	return &keyGate[T, K]{key: k, busy: map[K][]keyed[T]{}, keys: map[int]K{}}
}

// checkKey panics if the stage's KeyBy is not for input type In; fn names
// the stage's constructor.
func checkKey[In any](c *config, fn string) {
	if c.key == nil {
		return
	}
	if _, ok := c.key.(keyer[In]); !ok {
		panic(fmt.Sprintf("sluice: %s: the stage.KeyBy key function (%T) does not take the stage's input type %s", fn, c.key, typeName[In]()))
	}
}

func typeName[T any]() string {
	var v T
	return fmt.Sprintf("%T", &v)[1:]
}

// gate is a KeyBy stage's per-run state: which keys are busy and the items
// waiting for them.
type gate[T any] interface {
	// admit reports whether the item with index idx may start now; if
	// not, it waits (with its token) until the worker of its key takes
	// it. err is not nil when the key function panicked: the item failed
	// and is not admitted.
	admit(it item[T], idx int) (ok bool, err error)
	// done is called when the admitted item idx is finished: it returns
	// the next waiting item of its key, or false when the key is free.
	done(idx int) (item[T], int, bool)
}

type keyed[T any] struct {
	it  item[T]
	idx int
}

type keyGate[T any, K comparable] struct {
	key  keyFunc[T, K]
	mu   sync.Mutex
	busy map[K][]keyed[T] // a key is busy while present; its waiting items
	keys map[int]K        // the key of each admitted item, by index (none for a key != itself)
}

func (g *keyGate[T, K]) admit(it item[T], idx int) (bool, error) {
	var k K
	if rec := guard.Call(func() { k = g.key(it.v); mustHash(k) }); rec != nil {
		return false, panicError(rec)
	}
	if k != k {
		// A NaN (or a key holding one) equals no key, not even itself: a
		// map could store it but never find it again, so its item is
		// admitted without a place in the maps (done finds no key for it).
		return true, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if q, busy := g.busy[k]; busy {
		g.busy[k] = append(q, keyed[T]{it, idx})
		return false, nil
	}
	g.busy[k] = nil
	g.keys[idx] = k
	return true, nil
}

// mustHash panics as a map would if k cannot be a map key: a key of an
// interface type (K = any) holding a slice, a map or a func compiles, and
// panics only when hashed. Called in the key function's guard, it fails the
// item as a panic in key does, before the gate's maps (and its lock) see
// the key.
func mustHash[K comparable](k K) {
	var m map[K]struct{}
	_ = m[k] // a lookup in a nil map still hashes the key
}

func (g *keyGate[T, K]) done(idx int) (item[T], int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k, known := g.keys[idx]
	if !known {
		return item[T]{}, 0, false // its key equals no other (see admit)
	}
	delete(g.keys, idx)
	q := g.busy[k]
	if len(q) == 0 {
		delete(g.busy, k)
		return item[T]{}, 0, false
	}
	next := q[0]
	q[0] = keyed[T]{}
	if len(q) == 1 {
		q = nil // let the backing array go
	} else {
		q = q[1:]
	}
	g.busy[k] = q
	g.keys[next.idx] = k
	return next.it, next.idx, true
}
