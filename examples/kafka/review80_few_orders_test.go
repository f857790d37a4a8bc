package main

import (
	"testing"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

// Review80: run accepts "0 orders or more" (its error for -n -1 says so), and
// the doc comment promises that "the members drain once every order is stored
// and every offset committed" and that the program prints what each member
// did. With no orders, or with too few orders to reach every one of the 8
// partitions, the run must still end (exit 0) with the README's lines and
// its verdicts true. A hang is caught by cmdtest's watchdog (a minute).

func TestReview80KafkaZeroOrders(t *testing.T) {
	bin := cmdtest.Build(t)
	cmdtest.CheckReplicas(t, bin, r7Header, r7Unit, r7DB, 0, 3,
		[]string{"offsets committed to the end", "every record committed exactly once"},
		"-n", "0", "-crash=false")
}

// With -n 10 (customers 0 to 9), partition 0 gets no record (its end
// offset stays 0).
func TestReview80KafkaFewerKeysThanPartitions(t *testing.T) {
	bin := cmdtest.Build(t)
	cmdtest.CheckReplicas(t, bin, r7Header, r7Unit, r7DB, 10, 3,
		[]string{"offsets committed to the end", "every record committed exactly once"},
		"-n", "10", "-crash=false")
}

// A control for the two above: enough orders to reach all 8 partitions
// (200 orders, 97 customers), and the same run ends as promised.
func TestReview80KafkaEveryPartitionReached(t *testing.T) {
	bin := cmdtest.Build(t)
	cmdtest.CheckReplicas(t, bin, r7Header, r7Unit, r7DB, 200, 3,
		[]string{"offsets committed to the end", "every record committed exactly once"},
		"-n", "200", "-crash=false")
}
