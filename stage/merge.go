package stage

// Merge returns a stream with the items of all ins, in the order they become
// available (no order between inputs). One goroutine per input moves items
// on; together they are at most one item per input ahead of the merged
// stream's consumer (an input that ended leaves its room to the others). Forwarded errors pass through. The merged
// stream ends when every input has ended.
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
	waits := false
	for _, n := range nodes {
		waits = waits || n.waits
	}
	ins = append([]Stream[T](nil), ins...) // the caller may reuse its slice
	return Stream[T]{
		n: &node{kind: "merge", inputs: nodes, waits: waits},
		open: openFunc[T](func(r *run) puller[T] {
			out := newQueue[T](r, len(ins), len(ins))
			for _, in := range ins {
				p := in.openFor(r, 1).next()
				r.goroutine(func() {
					defer out.closeWriter()
					for out.acquire() {
						it, _, ok := p.pull()
						if !ok {
							out.release(1)
							return
						}
						it.flags |= tok
						out.push(it)
					}
				})
			}
			return out
		}),
	}
}
