package kafka_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
)

// childMember is the main of a child process started by a test: one member
// of group "g" over topic "jobs" that prints each record it stored ("S
// partition offset value") before acknowledging it. It returns the exit
// code.
func childMember(addrs string) int {
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	put := func(r kafka.Record[int]) { // the sink's callback: one call at a time
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "S %d %d %d\n", r.Partition, r.Offset, r.Value)
		out.Flush()
	}
	err := member(context.Background(), context.Background(), strings.Split(addrs, ","), "g", "jobs", put, nil, kafka.CommitInterval(200*time.Millisecond))
	fmt.Fprintln(os.Stderr, "member:", err)
	return 1
}

// A member killed with SIGKILL mid-run (a child process) loses nothing:
// the survivor takes its partitions from their committed offsets and
// finishes; the records the killed member stored but had not committed
// come again, and the idempotent sink absorbs them.
func TestKilledMemberLosesNothing(t *testing.T) {
	const n = 5000
	_, addrs := newCluster(t, 4, "jobs")
	produce(t, addrs, "jobs", n, keyOf)
	st := newStore()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), memberEnv+"="+strings.Join(addrs, ","))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	childStored := 0
	killed := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var p int32
			var off int64
			var v int
			if _, err := fmt.Sscanf(sc.Text(), "S %d %d %d", &p, &off, &v); err == nil {
				st.put(kafka.Record[int]{Partition: p, Offset: off, Value: v})
				if childStored++; childStored == 1000 {
					cmd.Process.Signal(syscall.SIGKILL)
					close(killed)
				}
			}
		}
	}()
	<-killed
	<-read
	cmd.Wait()

	stop, drain := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- member(context.Background(), stop, addrs, "g", "jobs", st.put, nil) }()
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	drain()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, addrs, "g", "jobs")
	t.Logf("the killed member stored %d records; %d duplicates absorbed", childStored, st.dups)
}
