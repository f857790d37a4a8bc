package natsjs

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// inProgressMsg is a message that reports its in-progress acks; the rest
// of jetstream.Msg is not used here.
type inProgressMsg struct {
	jetstream.Msg
	wpi chan struct{}
}

func (m *inProgressMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return nil, errors.New("no metadata")
}

func (m *inProgressMsg) InProgress() error {
	select {
	case m.wpi <- struct{}{}:
	default:
	}
	return nil
}

// Source: a message a try rejected "stays in flight until then (kept alive
// by KeepAlive, if set)": the keep-alive ticker sends it in-progress acks
// while it waits for a live call or the stop. (Black-box, a live call
// settles it within moments, so this looks at the mechanism: reject keeps
// the message among those in flight, which the ticker serves.)
func TestRejectedMessageIsKeptAlive(t *testing.T) {
	s := &sourceRun{cfg: sourceConfig{keepAlive: time.Millisecond}, inFlight: map[*msgAck]struct{}{}}
	m := &inProgressMsg{wpi: make(chan struct{}, 1)}
	s.reject(s.track(m), Permanent(errors.New("undecodable")))
	stop := s.startKeepAlive()
	defer stop()
	select {
	case <-m.wpi:
	case <-time.After(30 * time.Second): // watchdog only
		t.Fatal("no in-progress ack for a message a try rejected")
	}
}
