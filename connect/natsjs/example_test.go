package natsjs_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/stage"
)

// One replica of a pipeline on a JetStream work queue: numbers in, squares
// out, each message acknowledged once its square is published. Run the same
// code in more processes and they share the work.
func ExampleSource() {
	dir, _ := os.MkdirTemp("", "natsjs")
	defer os.RemoveAll(dir)
	srv, _ := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	go srv.Start()
	srv.ReadyForConnections(10e9)
	defer srv.WaitForShutdown()
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	js.CreateStream(ctx, jetstream.StreamConfig{Name: "NUMS", Subjects: []string{"nums"}, Retention: jetstream.WorkQueuePolicy})
	js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUARES", Subjects: []string{"squares"}})
	cons, _ := js.CreateOrUpdateConsumer(ctx, "NUMS", jetstream.ConsumerConfig{Durable: "squarers", AckPolicy: jetstream.AckExplicitPolicy})
	for i := 1; i <= 3; i++ {
		js.Publish(ctx, "nums", []byte(strconv.Itoa(i)))
	}

	stop, drain := context.WithCancel(ctx) // a service drains on SIGTERM
	nums := natsjs.Source(cons, func(b []byte) (int, error) { return strconv.Atoi(string(b)) })
	squares := stage.Map(stage.Until(nums, stop), func(_ context.Context, m natsjs.Msg[int]) (int, error) {
		return m.Value * m.Value, nil
	})
	var counts natsjs.Published
	squares = stage.Map(squares, func(_ context.Context, sq int) (int, error) {
		if sq == 9 { // the last one: drain once it is through
			defer drain()
		}
		return sq, nil
	}, stage.Workers(1))
	err := natsjs.Publish(ctx, js, squares, func(sq int) (*nats.Msg, error) {
		return &nats.Msg{Subject: "squares", Data: []byte(strconv.Itoa(sq))}, nil
	}, func(sq int) string { return "sq-" + strconv.Itoa(sq) }, &counts)

	// Acknowledgements are sent without waiting for the server's reply: the
	// work queue empties as the server takes them in (30 s: a hang bound).
	left := uint64(0)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		info, _ := js.Stream(ctx, "NUMS")
		if left = info.CachedInfo().State.Msgs; left == 0 || time.Now().After(deadline) {
			break
		}
	}
	fmt.Println(err, counts.Stored.Load(), "published,", left, "left in the work queue")
	// Output: <nil> 3 published, 0 left in the work queue
}
