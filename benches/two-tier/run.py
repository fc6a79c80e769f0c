"""Two-tier figures for BENCHMARKS.md (`make bench-two-tier`): a gateway
routing by trace ID to graph instances, a real Prometheus scraping them.

  faults    traffic flows while one graph instance is killed (SIGKILL) and
            started again: requests lost, requests counted twice, and
            whether the map read back from Prometheus stays complete.
  resize    the gateway goes from one graph instance to two while traffic
            flows, with each trace's client and server spans sent a second
            apart: requests left unpaired by the change.
  scale     spans per second through the gateway and N = 1, 2 instances
            (the sender, four threads of this script, shares the machine),
            with each collector's CPU.

Run from the repository root with the test environment's Python
(`make setup-test`); it prints one line per figure."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import harness  # noqa: E402
import tracegen  # noqa: E402
from harness import LOOPBACK, Process, free_port, http_get, http_post, poll, port_open  # noqa: E402

EXAMPLES = os.path.join(ROOT, "examples", "two-tier")
CLI = os.path.join(ROOT, "target", "release", "servicemap")
TICKS = os.sysconf("SC_CLK_TCK")
EDGE = ("frontend", "checkout")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Tiers:
    """Graph instances, a gateway and Prometheus, on free loopback ports."""

    def __init__(self, workdir, instances):
        self.workdir = workdir
        self.graphs = [self._graph_ports() for _ in range(instances)]
        self.procs = {}
        for n, g in enumerate(self.graphs):
            self.start_graph(n)
        self.grpc, self.http = free_port(), free_port()
        self.start_gateway(self.graphs)
        self.prom = self._prometheus()

    @staticmethod
    def _graph_ports():
        return {"otlp": free_port(), "metrics": free_port()}

    def _collector(self, name, example, env, ready):
        telemetry = os.path.join(self.workdir, f"{name}-telemetry.yaml")
        with open(telemetry, "w") as f:
            json.dump({"service": {"telemetry": {"metrics": {"level": "none"}}}}, f)
        proc = Process([harness.collector_binary(), f"--config={os.path.join(EXAMPLES, example)}",
                        f"--config={telemetry}"], os.path.join(self.workdir, f"{name}-{time.time_ns()}.log"),
                       env={**os.environ, **env})
        poll(lambda: proc.alive() and ready(), 60, interval=0.1, what=f"{name} ready")
        self.procs[name] = proc
        return proc

    def start_graph(self, n):
        g = self.graphs[n]
        env = {"SERVICEMAP_OTLP_ENDPOINT": f"{LOOPBACK}:{g['otlp']}",
               "SERVICEMAP_METRICS_ENDPOINT": f"{LOOPBACK}:{g['metrics']}"}
        url = f"http://{LOOPBACK}:{g['metrics']}/metrics"
        self._collector(f"graph-{n}", "graph.yaml", env,
                        lambda: port_open(g["otlp"]) and http_get(url, timeout=2)[0] == 200)

    def start_gateway(self, graphs):
        backends = "[" + ", ".join(f"{LOOPBACK}:{g['otlp']}" for g in graphs) + "]"
        env = {"SERVICEMAP_BACKENDS": backends, "SERVICEMAP_OTLP_GRPC_ENDPOINT": f"{LOOPBACK}:{self.grpc}",
               "SERVICEMAP_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{self.http}"}
        self._collector("gateway", "gateway.yaml", env, lambda: port_open(self.http))

    def _prometheus(self):
        port = free_port()
        base = os.path.join(self.workdir, f"prometheus-{port}")
        os.makedirs(os.path.join(base, "data"))
        with open(os.path.join(base, "prometheus.yml"), "w") as f:
            json.dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                       "scrape_configs": [{"job_name": "servicemap", "static_configs": [
                           {"targets": [f"{LOOPBACK}:{g['metrics']}" for g in self.graphs]}]}]}, f)
        proc = Process(["prometheus", f"--config.file={base}/prometheus.yml", f"--storage.tsdb.path={base}/data",
                        f"--web.listen-address={LOOPBACK}:{port}", "--log.level=warn"],
                       os.path.join(base, "log"), cwd=base)
        self.prom_url = f"http://{LOOPBACK}:{port}"
        poll(lambda: http_get(f"{self.prom_url}/-/ready", timeout=2)[0] == 200, 60, what="prometheus ready")
        self.procs["prometheus"] = proc
        return proc

    def send(self, body):
        status, text = http_post(f"http://{LOOPBACK}:{self.http}/v1/traces", body,
                                 content_type="application/x-protobuf", timeout=60)
        assert status == 200, text

    def query(self, promql):
        return harness.prom_query(self.prom_url, promql)

    def stop(self):
        for p in self.procs.values():
            p.stop(grace=15.0)


def counted(t, edge=EDGE, window="1h"):
    """Requests of `edge` counted over the run, across counter resets."""
    rows = t.query(f'sum(increase(traces_service_graph_request_total{{client="{edge[0]}",server="{edge[1]}"}}[{window}]))')
    return round(float(rows[0]["value"][1])) if rows else 0


def raw_total(t, edge=EDGE):
    rows = t.query(f'sum(traces_service_graph_request_total{{client="{edge[0]}",server="{edge[1]}"}})')
    return round(float(rows[0]["value"][1])) if rows else 0


def faults(workdir, traces=12_000):
    t = Tiers(workdir, 2)
    try:
        batches = list(tracegen.batches(traces, per_batch=100, seed=7))
        killed_at = []

        def chaos():
            time.sleep(20)
            killed_at.append(time.time())
            t.procs["graph-1"].proc.send_signal(signal.SIGKILL)
            t.procs["graph-1"].proc.wait()
            time.sleep(10)
            t.start_graph(1)

        c = threading.Thread(target=chaos)
        c.start()
        start = time.time()
        for n, b in enumerate(batches):  # 100 traces every 0.5 s: 200 traces/s for 60 s
            time.sleep(max(0, start + n * 0.5 - time.time()))
            t.send(b)
        c.join()
        # Let the gateway's retries land and the instances' waiting spans expire.
        time.sleep(40)
        target = f"{LOOPBACK}:{t.graphs[1]['metrics']}"
        figures = []
        for e in (EDGE, ("user", "frontend")):
            # The killed instance's count as Prometheus last scraped it before the kill.
            q = f'sum(traces_service_graph_request_total{{client="{e[0]}",server="{e[1]}",instance="{target}"}})'
            rows = harness.prom_query(t.prom_url, q, at=killed_at[0])
            before_kill = round(float(rows[0]["value"][1])) if rows else 0
            survivor, restarted = exposed_by(t, 0, e), exposed_by(t, 1, e)
            total = survivor + before_kill + restarted
            figures.append(f"{e[0]}->{e[1]}: {survivor} by the survivor + {before_kill} scraped from the killed "
                           f"one before the kill + {restarted} after its restart = {total}, "
                           f"{max(0, traces - total)} lost, {max(0, total - traces)} counted twice")
        approx = counted(t)
        edges = json.loads(subprocess.run([CLI, "graph", "--prometheus", t.prom_url, "--format", "json"],
                                          capture_output=True, text=True, check=True).stdout)["edges"]
        print(f"faults: {traces} traces at 200/s, one of two instances killed (SIGKILL) at 20 s and started "
              f"again at 30 s; " + "; ".join(figures) + f"; sum(increase(...[1h])) for {EDGE[0]}->{EDGE[1]} "
              f"reads {approx}; map from Prometheus after the restart: "
              f"{sorted((e['client'], e['server']) for e in edges)}")
    finally:
        t.stop()


def exposed_by(t, n, edge=EDGE):
    """Requests of `edge` in instance n's own exposition."""
    g = t.graphs[n]
    expo = harness.Exposition(http_get(f"http://{LOOPBACK}:{g['metrics']}/metrics")[1])
    return round(sum(v for labels, v in expo.series("traces_service_graph_request_total")
                     if (labels["client"], labels["server"]) == edge))


def split(body):
    """A batch as two requests: the frontend's spans, and the rest."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    whole = ExportTraceServiceRequest.FromString(body)
    first, rest = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    first.resource_spans.extend(whole.resource_spans[:1])
    rest.resource_spans.extend(whole.resource_spans[1:])
    return first.SerializeToString(), rest.SerializeToString()


def resize(workdir, traces=6000, gap=1.0):
    t = Tiers(workdir, 1)
    try:
        t.graphs.append(Tiers._graph_ports())
        t.start_graph(1)
        # Each trace's frontend spans go `gap` seconds before the rest, as
        # from services that export on their own; halfway, the gateway is
        # restarted with two instances instead of one.
        sends = []
        for n, b in enumerate(tracegen.batches(traces, per_batch=100, seed=11)):
            a, rest = split(b)
            sends += [(n * 0.5, a), (n * 0.5 + gap, rest)]
        sends.sort(key=lambda s: s[0])
        change_at = sends[-1][0] / 2
        changed = False
        start = time.time()
        for at, body in sends:
            time.sleep(max(0, start + at - time.time()))
            if not changed and at >= change_at:
                t.procs["gateway"].stop(grace=15.0)
                t.start_gateway(t.graphs)
                changed = True
            t.send(body)
        time.sleep(30)  # the store's ttl (10s) and the expiry of what waits
        paired = exposed(t)
        virtual = exposed(t, ("user", "checkout"))
        print(f"resize: gateway restarted from 1 to 2 instances halfway through {traces} traces "
              f"(frontend spans sent {gap:.0f} s before the rest): {paired} {EDGE[0]}->{EDGE[1]} paired, "
              f"{traces - paired} split between instances ({virtual} of them drawn as user->checkout)")
    finally:
        t.stop()


def exposed(t, edge=EDGE):
    """Requests of `edge` in the instances' own expositions, summed."""
    return sum(exposed_by(t, n, edge) for n in range(len(t.graphs)))


def scale(workdir, instances, traces=60_000, per_batch=500, senders=4):
    t = Tiers(workdir, instances)
    try:
        # Every edge exists first, so that the timed part is not the new
        # edges' initial_zero_hold.
        warm = 2_000
        for b in tracegen.batches(warm, per_batch=per_batch, seed=2):
            t.send(b)
        poll(lambda: exposed(t) >= warm, 120, interval=0.2, what="warm-up counted")
        batches = list(tracegen.batches(traces, per_batch=per_batch, seed=3))
        spans = traces * 6
        pids = {name: p.pid for name, p in t.procs.items() if name != "prometheus"}
        before = {n: cpu_seconds(p) for n, p in pids.items()}
        t0 = time.time()
        threads = [threading.Thread(target=lambda part=batches[i::senders]: [t.send(b) for b in part])
                   for i in range(senders)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        poll(lambda: exposed(t) >= warm + traces, 300, interval=0.1, what="all counted")
        took = time.time() - t0
        cpu = {n: cpu_seconds(p) - before[n] for n, p in pids.items()}
        total_cpu = sum(cpu.values())
        print(f"scale N={instances}: {spans:,} spans counted {took:.1f} s after the first was sent: "
              f"{spans / took:,.0f} spans/s; CPU seconds "
              + ", ".join(f"{n} {c:.2f}" for n, c in sorted(cpu.items()))
              + f"; gateway {100 * cpu['gateway'] / total_cpu:.0f}% of the collectors' CPU; "
              f"{1e9 * cpu['gateway'] / spans:,.0f} CPU-ns per span in the gateway, "
              f"{1e9 * (total_cpu - cpu['gateway']) / spans:,.0f} in the graph tier")
    finally:
        t.stop()


if __name__ == "__main__":
    which = sys.argv[1:] or ["faults", "resize", "scale"]
    with tempfile.TemporaryDirectory(prefix="servicemap-two-tier-") as workdir:
        if "faults" in which:
            faults(workdir)
        if "resize" in which:
            resize(workdir)
        if "scale" in which:
            scale(workdir, 1)
            scale(workdir, 2)
