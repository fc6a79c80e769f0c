package web

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
)

// The generated incidents of tests/fixtures/incidents and the answers every
// surface gives (expected.json), here through GET /api/impact over a real
// engine fed the files as the other surfaces feed them: each line (a batch)
// at the latest span end time read so far, expiry at that time, and at the
// end whatever still waits expires and the question is asked at that time.
const incidentsDir = "../../../tests/fixtures/incidents"

type incidentTable struct {
	Incidents []struct {
		Name    string
		Answers []struct {
			Service string
			Impact  map[string]any
		}
	}
}

// feedIncident feeds an incident file to a new engine and returns it with
// the time to ask at.
func feedIncident(t *testing.T, name string) (*engine.Engine, time.Time) {
	t.Helper()
	eng, err := engine.New([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	f, err := os.Open(filepath.Join(incidentsDir, name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 0, 1<<20), 1<<24)
	var latest uint64
	for lines.Scan() {
		if len(bytes.TrimSpace(lines.Bytes())) == 0 {
			continue
		}
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(lines.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, s := range ss.Spans().All() {
					latest = max(latest, uint64(s.EndTimestamp()))
				}
			}
		}
		b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(0, int64(latest))
		if err := eng.Consume(b, now); err != nil {
			t.Fatal(err)
		}
		if err := eng.Expire(now); err != nil {
			t.Fatal(err)
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, int64(latest))
	if err := eng.Flush(now); err != nil {
		t.Fatal(err)
	}
	return eng, now
}

func TestIncidentsImpactAnswers(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(incidentsDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var table incidentTable
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	if len(table.Incidents) != 6 {
		t.Fatalf("expected.json lists %d incidents, want the generator's 6", len(table.Incidents))
	}
	for _, inc := range table.Incidents {
		t.Run(inc.Name, func(t *testing.T) {
			if len(inc.Answers) == 0 {
				t.Fatal("no answers to check")
			}
			eng, now := feedIncident(t, inc.Name)
			mux := http.NewServeMux()
			Register(mux, eng, func() time.Time { return now }, EdgesOptions{})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			for _, a := range inc.Answers {
				code, ctype, body := get(t, srv.URL+"/api/impact?service="+url.QueryEscape(a.Service))
				if code != http.StatusOK || ctype != "application/json" {
					t.Fatalf("%s: status %d, content type %q: %s", a.Service, code, ctype, body)
				}
				var got map[string]any
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, a.Impact) {
					t.Errorf("%s:\n got %v\nwant %v", a.Service, got, a.Impact)
				}
			}
		})
	}
}
