package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Record is a decoded Kafka record and where it came from. Key and
// Headers share their memory with the record the source holds: do not
// modify them in place (append to a copy), since a try again and a dead
// letter are made from that record and would carry the change.
type Record[T any] struct {
	Value     T
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Headers   []kgo.RecordHeader
	Timestamp time.Time
	Attempts  int // 1 on the first try; more when a failed record is tried again
}

// RecordKey is the key of a record within its partition, the unit of
// [ByKey] order.
type RecordKey struct {
	Topic     string
	Partition int32
	Key       string
}

// ByKey is the key function for stage.KeyBy that keeps per-key order: the
// records of one key of one partition are processed one at a time, in
// offset order.
func ByKey[T any](r Record[T]) RecordKey {
	return RecordKey{Topic: r.Topic, Partition: r.Partition, Key: string(r.Key)}
}

// ByPartition is the key function for stage.KeyBy that keeps partition
// order: a partition's records are processed one at a time, in offset
// order.
func ByPartition[T any](r Record[T]) RecordKey {
	return RecordKey{Topic: r.Topic, Partition: r.Partition}
}
