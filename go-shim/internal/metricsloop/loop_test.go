package metricsloop

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
)

// TestExpiryOnly: a loop for a component that serves its metrics asks for
// the expiry ticker alone, expires on each tick, and never pushes.
func TestExpiryOnly(t *testing.T) {
	eng, err := engine.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	core, logs := observer.New(zapcore.InfoLevel)
	l := ExpiryOnly(eng, zap.New(core), 3*time.Second)
	now := time.Unix(1_700_000_000, 0)
	l.Now = func() time.Time { return now }
	tick := make(chan time.Time)
	var periods []time.Duration
	l.NewTicker = func(d time.Duration) (<-chan time.Time, func()) {
		periods = append(periods, d)
		return tick, func() {}
	}
	expired := make(chan struct{})
	l.AfterExpire = func() { expired <- struct{}{} }
	l.AfterPush = func() { t.Error("an expiry-only loop pushed") }

	if l.PushesPerBatch() {
		t.Error("an expiry-only loop asks for a push after every batch")
	}
	l.Push(context.Background()) // no pipeline: nothing to send, no panic
	l.Start()
	if len(periods) != 1 || periods[0] != 3*time.Second {
		t.Errorf("tickers %v, want one of 3s", periods)
	}
	tick <- now
	<-expired
	l.Stop()
	if logs.Len() != 0 {
		t.Errorf("logged %v", logs.All())
	}
}
