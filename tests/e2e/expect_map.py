"""The live service map that the shop's traffic must give, derived from
traffic.EXPECTED and traffic.PROTOCOL with the rules the README states:
node kinds, edge connection types and protocols, rates over the window,
latency percentiles from the sketch, health under the default SLO, and the
answers of the incident queries (impact, root causes, recovery order).
Also a helper that polls /api/graph until the map shows all of it."""

import bisect
import collections
import json
import math
import sys

import harness
import traffic

SCHEMA = "servicemap.graph/v1"
# The map's sliding window (graph_window, 5 minutes by default): a rate is
# the requests in the window divided by its length.
WINDOW_SECONDS = 300.0

# The default SLO: availability 0.99, p99 at most 1 s, yellow past 80 % of
# the error budget or of the latency threshold.
AVAILABILITY = 0.99
LATENCY_PERCENTILE = 0.99
LATENCY_THRESHOLD_S = 1.0
WARN_FRACTION = 0.8

HEALTH_RANK = {"unknown": 0, "green": 1, "yellow": 2, "red": 3}
COLOUR = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828", "unknown": "#9e9e9e"}
# Node kinds in the order the engine prefers when two inferences disagree
# (a node that reported spans is always a service).
KINDS = ("service", "database", "queue", "external", "user")

# The latency sketch: the buckets of a native histogram at schema 3, bucket
# k holding (2^((k-1)/8), 2^(k/8)], from the bucket of 100 µs (k = -106) to
# that of 127 s (k = 56); values outside (and 0) are counted in the end
# buckets. A percentile is found as Prometheus' histogram_quantile finds it
# in a native histogram: in the bucket where the running count reaches
# q·n, as far into it on a log scale as the rank is into its count.
SKETCH_FIRST_KEY = -106
SKETCH_LAST_KEY = 56
# The bounds that split [0.5, 1) into eighths of an octave, as the engine computes them.
_FRACTIONS = [2.0 ** (i / 8 - 1.0) for i in range(8)]


def sketch_key(seconds):
    if not seconds > 2.0 ** -128:
        return SKETCH_FIRST_KEY
    frac, exp = math.frexp(min(seconds, sys.float_info.max))
    key = bisect.bisect_left(_FRACTIONS, frac) + (exp - 1) * 8
    return min(max(key, SKETCH_FIRST_KEY), SKETCH_LAST_KEY)


def sketch_upper(key):
    return _FRACTIONS[key % 8] * 2.0 ** (key // 8 + 1)


def quantile(latencies, q):
    """The q quantile of latencies as the sketch reports it, or None."""
    if not latencies:
        return None
    counts = collections.Counter(sketch_key(v) for v in latencies)
    n = len(latencies)
    rank = min(max(q * n, 0.0), n)
    seen = 0
    for key in sorted(counts):
        before, seen = seen, seen + counts[key]
        if seen >= rank:
            fraction = (rank - before) / counts[key]
            upper = sketch_upper(key)
            if fraction >= 1.0:
                return upper
            lower = sketch_upper(key - 1)
            return lower * (upper / lower) ** fraction
    return None


def _pct(v):
    return f"{v * 100:.2f}%"


def _secs(v):
    return f"{v * 1000:.1f}ms" if v < 1.0 else f"{v:.2f}s"


def _number(v):
    """A float as the engine prints it (no trailing .0)."""
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def judge(error_rate, latency):
    """(health, reason) of traffic under the default SLO."""
    budget = max(1.0 - AVAILABILITY, 0.0)
    health, reasons = "green", []
    if error_rate > budget:
        health = "red"
        reasons.append(f"error rate {_pct(error_rate)} over the budget {_pct(budget)}")
    elif budget > 0 and error_rate > WARN_FRACTION * budget:
        health = "yellow"
        reasons.append(f"error rate {_pct(error_rate)} near the budget {_pct(budget)}")
    if latency is not None:
        p = "p" + _number(LATENCY_PERCENTILE * 100)
        if latency > LATENCY_THRESHOLD_S:
            health = "red"
            reasons.append(f"{p} {_secs(latency)} over {_secs(LATENCY_THRESHOLD_S)}")
        elif latency > WARN_FRACTION * LATENCY_THRESHOLD_S:
            health = max(health, "yellow", key=HEALTH_RANK.get)
            reasons.append(f"{p} {_secs(latency)} near {_secs(LATENCY_THRESHOLD_S)}")
    return health, "; ".join(reasons)


def virtual_sides(key):
    """(client inferred, server inferred) of an edge of traffic.EXPECTED: a
    virtual-node edge to a root server span has the virtual client `user`;
    any other has an inferred server (named by a peer attribute)."""
    client, _server, conn = key
    if conn != "virtual_node":
        return False, False
    return client == "user", client != "user"


def edges():
    """{(client, server): the edge as /api/graph gives it, without the seen times}."""
    out = {}
    for key, requests in traffic.EXPECTED.items():
        client, server, conn = key
        _, virtual_server = virtual_sides(key)
        n = len(requests)
        failed = sum(1 for f, _, _ in requests if f)
        # The server's view of latency, except where the server was inferred.
        latencies = [client_s if virtual_server else server_s for _, server_s, client_s in requests]
        error_rate = failed / n
        health, reason = judge(error_rate, quantile(latencies, LATENCY_PERCENTILE))
        out[(client, server)] = {
            "client": client,
            "server": server,
            "connection_type": conn or "",
            "protocol": traffic.PROTOCOL[key],
            "rate": n / WINDOW_SECONDS,
            "error_rate": error_rate,
            "p50_seconds": quantile(latencies, 0.5),
            "p90_seconds": quantile(latencies, 0.9),
            "p99_seconds": quantile(latencies, 0.99),
            "health": health,
            "reason": reason,
        }
    return out


def node_kinds():
    """{node: kind}: instrumented services, and what each edge says of its sides."""
    kinds = {}

    def add(name, kind):
        old = kinds.get(name, kind)
        kinds[name] = "service" if "service" in (old, kind) else min(old, kind, key=KINDS.index)

    for service in traffic.SERVICES:
        add(service, "service")
    for key in traffic.EXPECTED:
        client, server, conn = key
        virtual_client, virtual_server = virtual_sides(key)
        add(client, ("user" if client == "user" else "external") if virtual_client else "service")
        if conn == "database":
            add(server, "database")
        elif virtual_server:
            add(server, "queue" if conn == "messaging_system" else "external")
        else:
            add(server, "service")
    return kinds


def nodes():
    """{node: the node as /api/graph gives it, without the seen times}. A node
    is as bad as its worst incoming edge; without incoming traffic it is unknown."""
    all_edges = edges()
    out = {}
    for name, kind in sorted(node_kinds().items()):
        incoming = [reqs for key, reqs in traffic.EXPECTED.items() if key[1] == name]
        requests = sum(len(reqs) for reqs in incoming)
        errors = sum(1 for reqs in incoming for failed, _, _ in reqs if failed)
        healths = [e["health"] for e in all_edges.values() if e["server"] == name and e["health"] != "unknown"]
        health = max(healths, key=HEALTH_RANK.get) if healths else ("green" if requests else "unknown")
        service = name in traffic.SERVICES
        out[name] = {
            "id": name,
            "kind": kind,
            "health": health,
            "rate": requests / WINDOW_SECONDS,
            "error_rate": errors / requests if requests else 0.0,
            "owner": "",
            "tier": "",
            "version": traffic.SERVICE_VERSION if service else "",
            "environment": traffic.ENVIRONMENT if service else "",
            "namespace": "",
            "k8s_namespace": "",
            # The version never changed: no deploy was seen.
            "last_deploy_unix_nano": None,
        }
    return out


def _adjacency(edge_keys):
    callees, callers = {}, {}
    for client, server in edge_keys:
        callees.setdefault(client, set())
        callers.setdefault(server, set())
        if client != server:
            callees[client].add(server)
            callers[server].add(client)
    return callees, callers


def reach(start, following):
    """Nodes reachable from start, nearest first (each node's next ones by name)."""
    seen, queue, out = {start}, [start], []
    while queue:
        n = queue.pop(0)
        for m in sorted(following.get(n, set()) - seen):
            seen.add(m)
            out.append(m)
            queue.append(m)
    return out


def dependencies_first(within, callees):
    """The nodes of `within`, each after everything it calls (the shop has no
    cycle, so every recovery step is one node)."""
    seen, out = set(), []

    def visit(v):
        seen.add(v)
        for w in sorted(callees.get(v, set()) & within):
            if w not in seen:
                visit(w)
        out.append(v)

    for v in sorted(within):
        if v not in seen:
            visit(v)
    return out


def is_acyclic(edge_keys):
    callees, _ = _adjacency(edge_keys)
    return all(n not in reach(n, callees) for n in callees)


def _round_for_people(v):
    """Two decimals below 1, one below 100, none above; no trailing zeros."""
    text = f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _rps(v):
    return f"{_round_for_people(v)} rps"


def _duration(s):
    return f"{_round_for_people(s * 1000)}ms" if s < 1 else f"{_round_for_people(s)}s"


def evidence(name, all_edges):
    """Why `name` is suspected: its incoming calls' failed share against the
    default objective, and their slowest p99 against the threshold."""
    incoming = [e for (c, s), e in sorted(all_edges.items()) if s == name and c != name]
    rate = sum(e["rate"] for e in incoming)
    errors = sum(e["rate"] * e["error_rate"] for e in incoming)
    parts = []
    if rate > 0:
        parts.append(f"{_round_for_people(100 * errors / rate)}% of {_rps(rate)} failed "
                     f"(objective: at most {_round_for_people(100 * (1 - AVAILABILITY))}%)")
    p99s = [e["p99_seconds"] for e in incoming if e["p99_seconds"] is not None]
    if p99s:
        parts.append(f"p99 {_duration(max(p99s))} against {_duration(LATENCY_THRESHOLD_S)}")
    return f"{name}: {', '.join(parts) if parts else 'no traffic in the window'}"


def impact(service, extra_edges=()):
    """The answer of /api/impact for `service`; extra_edges are
    (client, server, requests) observed besides the shop's traffic (healthy,
    from services, without latency)."""
    all_edges = dict(edges())
    kinds = node_kinds()
    health = {n: v["health"] for n, v in nodes().items()}
    for client, server, count in extra_edges:
        kinds.setdefault(client, "service")
        health.setdefault(client, "unknown")
        e = all_edges.setdefault((client, server), {
            "rate": 0.0, "error_rate": 0.0, "health": "green", "p99_seconds": quantile([0.0], LATENCY_PERCENTILE)})
        e["rate"] += count / WINDOW_SECONDS
    callees, callers = _adjacency(all_edges)
    bad = lambda n: health[n] in ("yellow", "red")
    dependents = [n for n in reach(service, callers) if kinds[n] == "service"]
    on_path = {service, *dependents}
    degraded = [d for d in dependents
                if bad(d) or any(x in on_path and all_edges[(d, x)]["health"] in ("yellow", "red")
                                 for x in callees.get(d, ()))]
    deps = reach(service, callees)
    # Traffic entering from outside: edges from virtual clients (no callers of their own).
    virtual = {n for n, k in kinds.items() if k in ("user", "external") and not callers.get(n)}
    entering = [(s, e["rate"]) for (c, s), e in sorted(all_edges.items()) if c in virtual]
    user_total = sum(r for _, r in entering)
    user_facing = sum(r for s, r in entering if s in on_path)
    incoming = [e for (c, s), e in sorted(all_edges.items()) if s == service and c != service]
    blast = sum(e["rate"] for e in incoming)
    errors = sum(e["rate"] * e["error_rate"] for e in incoming)
    bad_deps = [n for n in deps if bad(n)]
    if bad_deps:
        # The shop has no cycle: the causes are the bad ones calling no bad one.
        direction = "downstream"
        suspects = sorted(n for n in bad_deps if not callees.get(n, set()) & set(bad_deps))
    elif bad(service):
        direction, suspects = "self", [service]
    else:
        direction, suspects = "none", []
    order = dependencies_first(set(deps) | on_path, callees)
    level = {}
    for n in order:
        level[n] = max((level[m] + 1 for m in callees.get(n, ()) if m in level), default=0)
    return {
        "service": service,
        "found": True,
        "health": health[service],
        "dependents": dependents,
        "degraded_dependents": degraded,
        "dependencies": deps,
        "user_facing_rps": user_facing,
        "user_facing_share": user_facing / user_total if user_total else 0.0,
        "root_cause_direction": direction,
        "suspects": suspects,
        "evidence": [evidence(n, all_edges) for n in suspects],
        "recovery_order": order,
        "recovery_steps": [{"services": [s], "cycle": False, "level": level[s]} for s in order],
        "blast_radius_rps": blast,
        "rate": blast,
        "error_rate": errors / blast if blast else 0.0,
        "callers": sorted(c for c in callers.get(service, ()) if c != service),
    }


def unhealthy():
    return {n for n, v in nodes().items() if v["health"] in ("yellow", "red")}


def root_causes():
    """Unhealthy nodes none of whose callees is unhealthy, by name."""
    bad = unhealthy()
    callees, _ = _adjacency(edges())
    return sorted(n for n in bad if not callees.get(n, set()) & bad)


def recovery_order():
    """/api/recovery_order: every unhealthy node and its dependencies, dependencies first."""
    callees, _ = _adjacency(edges())
    within = set()
    for n in unhealthy():
        within |= {n, *reach(n, callees)}
    order = dependencies_first(within, callees)
    level = {}
    for n in order:
        level[n] = max((level[m] + 1 for m in callees.get(n, ()) if m in level), default=0)
    return {"recovery_order": order,
            "recovery_steps": [{"services": [s], "cycle": False, "level": level[s]} for s in order]}


DOT_SHAPE = {"database": "cylinder", "queue": "cds", "external": "box", "user": "oval", "service": "box"}


def dot_lines():
    """(node lines, edge lines) of /graph.dot, coloured by health."""
    node_lines = []
    for name, n in nodes().items():
        style = "filled,dashed" if n["kind"] == "external" else "filled,rounded"
        node_lines.append(f'  "{name}" [shape={DOT_SHAPE[n["kind"]]}, style="{style}", '
                          f'fillcolor="{COLOUR[n["health"]]}", tooltip="{name} ({n["kind"]}), {n["health"]}"];')
    edge_lines = []
    for (client, server), e in sorted(edges().items()):
        label = f"{e['rate']:.2f} req/s"
        if e["error_rate"] > 0:
            label += f", {e['error_rate'] * 100:.1f}% err"
        if e["p99_seconds"] is not None:
            label += f", p99 {e['p99_seconds'] * 1000:.0f}ms"
        edge_lines.append(f'  "{client}" -> "{server}" [color="{COLOUR[e["health"]]}", label="{label}"];')
    return node_lines, edge_lines


def get_json(url):
    status, body = harness.http_get(url)
    assert status == 200, f"{url}: HTTP {status}: {body[:500]}"
    return json.loads(body)


def wait_for_graph(base_url, timeout):
    """Polls /api/graph until it has every expected node and every edge at
    its full rate (virtual-node edges appear only when their half-edge
    expires); returns that graph. Fails with the last difference otherwise."""
    want_nodes = set(nodes())
    want_rates = {k: e["rate"] for k, e in edges().items()}
    last = {}

    def settled():
        graph = get_json(f"{base_url}/api/graph")
        got_nodes = {n["id"] for n in graph["nodes"]}
        got_rates = {(e["client"], e["server"]): e["rate"] for e in graph["edges"]}
        last["diff"] = (f"nodes missing {sorted(want_nodes - got_nodes)}, extra {sorted(got_nodes - want_nodes)}; "
                        f"edge rates {got_rates}")
        return graph if got_nodes == want_nodes and got_rates == want_rates else None

    try:
        return harness.poll(settled, timeout, interval=0.25, what="service map")
    except harness.Timeout:
        raise AssertionError(f"the service map did not settle within {timeout}s: {last.get('diff')}") from None
