// Package enginetest holds test helpers that need the linked engine.
package enginetest

import (
	"testing"
	"time"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/testutil"
)

// RequireRealEngine skips the test while the linked library is a stub that
// accepts any batch and renders nothing.
func RequireRealEngine(t testing.TB) {
	t.Helper()
	e, err := engine.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Consume(testutil.Garbage, time.Now()) == nil {
		t.Skip("the linked servicemap library does not implement the engine yet")
	}
}
