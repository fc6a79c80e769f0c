// Program compare runs one collector binary with contrib's servicegraph
// connector, with the servicemap connector, with the servicemap receiver
// (which takes the OTLP requests itself, without the OTLP receiver and
// without pdata traces), and with no connector at all (the baseline: OTLP
// receiver and nop exporter), sends each the same OTLP/HTTP
// load on loopback, and reports the CPU time the collector process used per
// million spans (user + system, from /proc/<pid>/stat). The load is bounded
// by a span count and a time limit.
//
//	compare -collector bin/otelcol-compare -spans 1000000 -batch 1000
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servicemap/servicemap/go-shim/conformance/internal/workload"
)

// Both connectors and the servicemap receiver get the same settings:
// contrib's keys, which the servicemap components accept too.
const connectorSettings = `
    dimensions: [deployment.environment, http.request.method]
    virtual_node_peer_attributes: [peer.service, db.name, db.namespace, db.system, db.system.name]
    database_name_attributes: [db.name, db.namespace]
    store:
      ttl: 2s
      max_items: 2000000
    metrics_flush_interval: 60s
`

// baseline is the mode without a connector: receiver → nop exporter. Its
// CPU is what both connectors' runs spend before the connector.
const baseline = "baseline"

// receiverMode runs the servicemap receiver → metrics pipeline → nop exporter.
const receiverMode = "servicemap_receiver"

func config(connectorType string, port int) string {
	if connectorType == receiverMode {
		return fmt.Sprintf(`receivers:
  servicemap:
    protocols:
      http:
        endpoint: 127.0.0.1:%d%s
exporters:
  nop:
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [servicemap]
      exporters: [nop]
`, port, connectorSettings)
	}
	if connectorType == baseline {
		return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  nop:
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [nop]
`, port)
	}
	return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
connectors:
  %s:%s
exporters:
  nop:
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [%s]
    metrics:
      receivers: [%s]
      exporters: [nop]
`, port, connectorType, connectorSettings, connectorType, connectorType)
}

type options struct {
	collector string
	spans     int
	batch     int
	workers   int
	rounds    int
	limit     time.Duration
}

type result struct {
	mode    string
	spans   int64
	cpu     time.Duration
	wall    time.Duration
	peakRSS int64
}

func (r result) perMillion() float64 {
	return r.cpu.Seconds() / (float64(r.spans) / 1e6)
}

func main() {
	var o options
	flag.StringVar(&o.collector, "collector", "bin/otelcol-compare", "the comparison collector binary")
	flag.IntVar(&o.spans, "spans", 1_000_000, "spans to send to each collector")
	flag.IntVar(&o.batch, "batch", 1000, "spans per OTLP request")
	flag.IntVar(&o.workers, "workers", 2, "concurrent senders")
	flag.IntVar(&o.rounds, "rounds", 2, "runs of each connector, alternating")
	flag.DurationVar(&o.limit, "limit", 5*time.Minute, "longest a single run may take")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	// Requests are encoded before any collector starts: a ring of about
	// 20,000 spans, given new trace IDs each time round.
	ring := workload.Batches(workload.Options{BatchSpans: o.batch, Batches: max(1, 20_000/o.batch), Seed: 3})
	modes := []string{"service_graph", "servicemap", receiverMode, baseline}
	var results []result
	for round := 0; round < o.rounds; round++ {
		for _, mode := range modes {
			r, err := runOne(o, mode, ring)
			if err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
			results = append(results, r)
			fmt.Printf("round %d %-19s %9d spans  cpu %7.2fs  wall %6.2fs  %6.2f cpu-s per million spans  peak RSS %4d MiB\n",
				round+1, r.mode, r.spans, r.cpu.Seconds(), r.wall.Seconds(), r.perMillion(), r.peakRSS>>20)
		}
	}
	sum := map[string][2]float64{}
	for _, r := range results {
		s := sum[r.mode]
		s[0] += r.cpu.Seconds()
		s[1] += float64(r.spans) / 1e6
		sum[r.mode] = s
	}
	c, m, rc, z := sum["service_graph"], sum["servicemap"], sum[receiverMode], sum[baseline]
	cm, mm, rm, zm := c[0]/c[1], m[0]/m[1], rc[0]/rc[1], z[0]/z[1]
	fmt.Printf("contrib servicegraph: %.2f cpu-s per million spans; servicemap: %.2f; ratio %.2fx\n", cm, mm, cm/mm)
	fmt.Printf("without a connector: %.2f; above that, contrib %.2f, servicemap %.2f: ratio %.2fx\n", zm, cm-zm, mm-zm, (cm-zm)/(mm-zm))
	fmt.Printf("servicemap receiver (no OTLP receiver, no pdata traces): %.2f cpu-s per million spans; ratio to contrib's connector %.2fx\n", rm, cm/rm)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func runOne(o options, mode string, ring []ptrace.Traces) (result, error) {
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	dir, err := os.MkdirTemp("", "compare-collector-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config(mode, port)), 0o600); err != nil {
		return result{}, err
	}
	var logs bytes.Buffer
	cmd := exec.Command(o.collector, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	// exited is closed when the collector has exited; waitErr says how.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	url := fmt.Sprintf("http://127.0.0.1:%d/v1/traces", port)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.workers}}
	if err := waitReady(client, url, exited, 30*time.Second); err != nil {
		<-exitedOrKill(cmd, exited)
		return result{}, fmt.Errorf("%w (%v)\ncollector output:\n%s", err, waitErr, logs.String())
	}

	cpu0, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	sent, err := load(client, url, ring, o)
	wall := time.Since(start)
	if err != nil {
		return result{}, fmt.Errorf("%w\ncollector output:\n%s", err, logs.String())
	}
	cpu1, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}
	rss := peakRSS(cmd.Process.Pid)

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	return result{mode: mode, spans: sent, cpu: cpu1 - cpu0, wall: wall, peakRSS: rss}, nil
}

// exitedOrKill kills the collector unless it has exited already, and
// returns the channel that is closed once it has.
func exitedOrKill(cmd *exec.Cmd, exited chan struct{}) chan struct{} {
	select {
	case <-exited:
	default:
		_ = cmd.Process.Kill()
	}
	return exited
}

// waitReady polls the receiver with empty requests until it answers, the
// collector exits, or the deadline passes.
func waitReady(client *http.Client, url string, exited <-chan struct{}, within time.Duration) error {
	empty, err := ptraceotlp.NewExportRequestFromTraces(ptrace.NewTraces()).MarshalProto()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("collector exited before it was ready")
		default:
		}
		if resp, err := client.Post(url, "application/x-protobuf", bytes.NewReader(empty)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("collector not ready in time")
}

// load sends o.spans spans (whole requests) from o.workers senders. Each
// time round the ring, the traces get new IDs so that nothing repeats
// within a run (each run is a fresh collector).
func load(client *http.Client, url string, ring []ptrace.Traces, o options) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.limit)
	defer cancel()
	type req struct {
		body  []byte
		spans int
	}
	work := make(chan req, 2*o.workers)
	var sent atomic.Int64
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	var wg sync.WaitGroup
	for w := 0; w < o.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(r.body))
				if err != nil {
					fail(err)
					continue
				}
				hr.Header.Set("Content-Type", "application/x-protobuf")
				resp, err := client.Do(hr)
				if err != nil {
					fail(err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Errorf("receiver answered %s", resp.Status))
					continue
				}
				sent.Add(int64(r.spans))
			}
		}()
	}
	queued := 0
	pass := uint64(0)
feed:
	for queued < o.spans {
		workload.Renumber(ring, pass)
		pass++
		for _, td := range ring {
			body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
			if err != nil {
				fail(err)
				break feed
			}
			select {
			case work <- req{body: body, spans: td.SpanCount()}:
			case <-ctx.Done():
				break feed
			}
			queued += td.SpanCount()
			if queued >= o.spans {
				break
			}
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return sent.Load(), firstErr
	}
	if ctx.Err() != nil {
		return sent.Load(), fmt.Errorf("load not finished within %s", o.limit)
	}
	return sent.Load(), nil
}

// procCPU is the user + system CPU time of a process so far.
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after it start
	// after the last ')'. utime and stime are fields 14 and 15.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on Linux
// for every architecture Go runs on.
const clockTicks = 100

// peakRSS is the process's highest resident set size (VmHWM), 0 if unknown.
func peakRSS(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
