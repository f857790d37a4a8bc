package natsjs_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/natsjs"
)

// Invalid options panic when they are made, naming the function.
func TestOptionsMisusePanics(t *testing.T) {
	cases := map[string]func(){
		"natsjs.KeepAlive":  func() { natsjs.KeepAlive(0) },
		"natsjs.Backoff":    func() { natsjs.Backoff(time.Second, time.Millisecond) },
		"natsjs.OnAckError": func() { natsjs.OnAckError(nil) },
		"natsjs.DeadLetter": func() { natsjs.DeadLetter(nil, "dlq") },
		"natsjs.Source":     func() { natsjs.Source[int](nil, nil) },
	}
	for name, f := range cases {
		msg := func() (msg string) {
			defer func() { msg = fmt.Sprint(recover()) }()
			f()
			return ""
		}()
		if !strings.HasPrefix(msg, "sluice: "+name+":") {
			t.Errorf("%s: panic %q, want one starting with %q", name, msg, "sluice: "+name+":")
		}
	}
}
