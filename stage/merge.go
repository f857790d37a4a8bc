package stage

import "sync/atomic"

// Merge returns a stream with the items of all ins, in the order they become
// available (no order between inputs). One goroutine per input moves items
// on; each costs one channel hand-off. Forwarded errors pass through. The
// merged stream ends when every input has ended.
//
// Merge panics if an input is the zero Stream, or if two inputs share a
// stream (the same stream given twice, or two stages built on one stream):
// each stream feeds one consumer. With no inputs, the stream is empty.
func Merge[T any](ins ...Stream[T]) Stream[T] {
	nodes := make([]*node, len(ins))
	for i, in := range ins {
		in.check("stage.Merge")
		nodes[i] = in.n
	}
	checkDisjoint("stage.Merge", nodes)
	ins = append([]Stream[T](nil), ins...) // the caller may reuse its slice
	return Stream[T]{
		n: &node{kind: "merge", inputs: nodes},
		open: func(r *run) puller[T] {
			out := make(chan item[T])
			var live atomic.Int64
			live.Store(int64(len(ins)))
			if len(ins) == 0 {
				close(out)
			}
			for _, in := range ins {
				p := in.open(r)
				r.goroutine(func() {
					defer func() {
						if live.Add(-1) == 0 {
							close(out)
						}
						p.drain()
					}()
					for {
						it, _, ok := p.pull()
						if !ok {
							return
						}
						if !send(out, it, r.done) {
							return
						}
					}
				})
			}
			return &chanPuller[T]{ch: out, done: r.done}
		},
	}
}
