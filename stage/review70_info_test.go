package stage_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func r70infos(t *testing.T, s stage.Stream[int]) map[string]stage.Info {
	t.Helper()
	o := &r70obs{}
	_, err := sink.Slice(stage.Observe(context.Background(), o), s)
	var fe *sink.ForwardedError
	if err != nil && !errors.As(err, &fe) {
		t.Fatal(err)
	}
	for _, v := range o.check() {
		t.Error(v)
	}
	m := map[string]stage.Info{}
	for _, in := range o.infos {
		m[in.Name] = in
	}
	return m
}

func r70wantInfo(t *testing.T, got map[string]stage.Info, want stage.Info) {
	t.Helper()
	g, ok := got[want.Name]
	if !ok {
		t.Errorf("no Stage call for %q (got %v)", want.Name, got)
		return
	}
	if g != want {
		t.Errorf("Info of %q = %+v, want %+v", want.Name, g, want)
	}
}

// Info: "Workers int // the Workers bound; -1: no limit" and
// "Total is the number of items the stage expects, when its source knows its
// length (source.Slice, Indexed) and the stages between keep one output per
// input (Map, Concurrent, Until) ... It is -1 when unknown (after a Filter,
// FlatMap, Apply, Batch, Merge or Tee). Forwarded errors count".
// Workers: "0: DefaultWorkers. -1: no limit". Unbatch: "It is a stage of one
// worker".
func TestReview70InfoFields(t *testing.T) {
	const n = 17
	src := source.Slice(ints(n))
	a := stage.Map(src, func(_ context.Context, v int) (int, error) {
		if v%4 == 0 {
			return 0, errors.New("four")
		}
		return v, nil
	}, stage.Name("a"), stage.Workers(0), stage.OnError(stage.Forward))
	b := stage.Map(stage.Until(a, context.Background()), double, stage.Name("b"), stage.Workers(-1))
	tasks := stage.Map(b, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
		return func(context.Context) (int, error) { return v, nil }, nil
	}, stage.Name("tasks"), stage.Workers(1000))
	c := stage.Concurrent(tasks, stage.Name("c"), stage.Workers(1), stage.Ordered())
	f := stage.Filter(c, func(context.Context, int) (bool, error) { return true, nil }, stage.Name("f"), stage.Workers(2))
	g := stage.Map(f, double, stage.Name("g"), stage.Workers(5))
	fm := stage.FlatMap(source.Slice(ints(4)), func(_ context.Context, v int) ([]int, error) { return []int{v, v}, nil }, stage.Name("fm"))
	h := stage.Map(fm, double, stage.Name("h"))
	ap := stage.Apply(stage.Map(source.Slice(ints(3)), double, stage.Name("pre")), func(_ context.Context, v int, emit func(int) bool) error { emit(v); return nil }, stage.Name("ap"))
	i := stage.Map(ap, double, stage.Name("i"))
	ub := stage.Unbatch(stage.Batch(source.Slice(ints(6)), 4, 0))
	j := stage.Map(ub, double, stage.Name("j"))
	k := stage.Map(stage.Merge(source.Slice(ints(2)), source.Slice(ints(3))), double, stage.Name("k"))
	tee := stage.Tee(source.Slice(ints(5)), 2)
	l := stage.Map(tee[0], double, stage.Name("l"))
	m := stage.Map(tee[1], double, stage.Name("m"))
	fn := stage.Map(source.Func(func(context.Context) (int, error) { return 0, io.EOF }), double, stage.Name("fn"))
	z := stage.Map(source.Slice([]int{}), double, stage.Name("z"))
	ix := stage.Map(stage.Indexed(9, func(i int) int { return i }), double, stage.Name("ix"))

	got := r70infos(t, stage.Merge(g, h, i, j, k, l, m, fn, z, ix))
	r70wantInfo(t, got, stage.Info{Name: "a", Kind: "map", Workers: stage.DefaultWorkers(), Total: n})
	r70wantInfo(t, got, stage.Info{Name: "b", Kind: "map", Workers: -1, Total: n})
	r70wantInfo(t, got, stage.Info{Name: "tasks", Kind: "map", Workers: 1000, Total: n})
	r70wantInfo(t, got, stage.Info{Name: "c", Kind: "concurrent", Workers: 1, Total: n})
	r70wantInfo(t, got, stage.Info{Name: "f", Kind: "filter", Workers: 2, Total: n})
	r70wantInfo(t, got, stage.Info{Name: "g", Kind: "map", Workers: 5, Total: -1})
	r70wantInfo(t, got, stage.Info{Name: "fm", Kind: "flatmap", Workers: stage.DefaultWorkers(), Total: 4})
	r70wantInfo(t, got, stage.Info{Name: "h", Kind: "map", Workers: stage.DefaultWorkers(), Total: -1})
	r70wantInfo(t, got, stage.Info{Name: "ap", Kind: "apply", Workers: stage.DefaultWorkers(), Total: 3})
	r70wantInfo(t, got, stage.Info{Name: "i", Kind: "map", Workers: stage.DefaultWorkers(), Total: -1})
	r70wantInfo(t, got, stage.Info{Name: "j", Kind: "map", Workers: stage.DefaultWorkers(), Total: -1})
	r70wantInfo(t, got, stage.Info{Name: "k", Kind: "map", Workers: stage.DefaultWorkers(), Total: -1})
	r70wantInfo(t, got, stage.Info{Name: "l", Kind: "map", Workers: stage.DefaultWorkers(), Total: -1})
	r70wantInfo(t, got, stage.Info{Name: "m", Kind: "map", Workers: stage.DefaultWorkers(), Total: -1})
	r70wantInfo(t, got, stage.Info{Name: "fn", Kind: "map", Workers: stage.DefaultWorkers(), Total: -1})
	r70wantInfo(t, got, stage.Info{Name: "z", Kind: "map", Workers: stage.DefaultWorkers(), Total: 0})
	r70wantInfo(t, got, stage.Info{Name: "ix", Kind: "map", Workers: stage.DefaultWorkers(), Total: 9})
	var ubInfo *stage.Info
	for _, in := range got {
		if in.Kind == "unbatch" {
			in := in
			ubInfo = &in
		}
	}
	if ubInfo == nil || ubInfo.Workers != 1 || ubInfo.Total != -1 || !strings.HasPrefix(ubInfo.Name, "unbatch#") {
		t.Errorf("unbatch Info = %+v, want Workers 1, Total -1, an unbatch#k name", ubInfo)
	}
}

// Name: "Name sets the stage's name: its *Error values and observers (Info)
// carry it." A hostile (1 MiB, non-ASCII, control characters) name is carried
// as it is.
func TestReview70InfoHugeName(t *testing.T) {
	name := strings.Repeat("ü\x00\n%v", 1<<18)
	o := &r70obs{}
	s := stage.Map(source.Slice(ints(5)), func(_ context.Context, v int) (int, error) {
		if v == 3 {
			return 0, errors.New("three")
		}
		return v, nil
	}, stage.Name(name), stage.OnError(stage.Forward))
	_, err := sink.Slice(stage.Observe(context.Background(), o), s)
	var e *stage.Error
	if !errors.As(err, &e) || e.Stage != name || e.Index != 3 {
		t.Fatalf("err %T: want a forwarded *Error of the named stage at index 3", err)
	}
	if len(o.infos) != 1 || o.infos[0].Name != name {
		t.Fatalf("Info names differ from the given name")
	}
	w := o.watchers[0]
	if errs := w.failedErrs(); len(errs) != 1 || errs[0].Stage != name {
		t.Errorf("Finished did not get one *Error carrying the name")
	}
}
