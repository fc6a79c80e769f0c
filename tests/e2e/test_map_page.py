"""The live map page (`/`) in a real headless browser: Debian's Chromium,
driven by Playwright over the DevTools protocol. The page must draw every
node of the shop with its health, kind and facts, label every edge with its
rate, protocol, error rate and p99, and a click on a node must highlight
what depends on it, what it depends on and where the cause most likely lies,
and answer in the side panel in words: who is hurt, how many users, which
way the cause lies and why, and the recovery order as numbered steps. A
screenshot of the shop's map with the database selected is written to the
test's output directory (its path is printed).

The same page of the demo (`make demo`: examples/processor.yaml with its
catalog, fed by bin/demotraffic, which rolls payment out at a new version
partway) must draw the demo's topology, owners, tiers, versions and the
deploy as its API gives them; with the demo's database selected, its
screenshot is the README's picture, written to the path the README shows
(docs/map.png)."""

import json
import os
import re
import struct
import subprocess
import time

import pytest

import expect_map
import harness
from collectors import processor_ports_over, start_collector, stop_collector
from harness import LOOPBACK
from map_page import (CLICK_TIMEOUT_MS, DRAWN_EDGES, DRAWN_NODE_LINES, DRAWN_NODES, LOAD_TIMEOUT_MS,
                      SETTLE_TIMEOUT, VIEWPORT, drawn_answer, edge_label, fmt_rate, labels_of, list_items,
                      node_lines, panel_answer, utc, wait_until_drawn)

DATABASE = "pg-primary"
SERVICE = "payment"
# The panel's answer for SERVICE, word for word: the shop's database and its
# payment provider each fail one of their four calls.
PAYMENT_ANSWER = {
    "hurt": "2 dependents, 2 of them degraded (checkout, frontend).",
    "users": "Users affected: up to 0.013 requests/s, 100.0% of user traffic (an upper bound from the graph)",
    "cause": "Cause: downstream, in pg-primary, stripe-api",
    "evidence": ["pg-primary: 25% of 0.01 rps failed (objective: at most 1%), p99 31.2ms against 1s",
                 "stripe-api: 25% of 0.01 rps failed (objective: at most 1%), p99 15.6ms against 1s"],
    "recovery": ["1. pg-primary, stripe-api", "2. payment", "3. checkout", "4. frontend"],
}


@pytest.fixture(scope="module")
def page(browser, processor_collector, shop_traffic):
    """The map page of the processor collector, loaded once the shop's map has settled."""
    expect_map.wait_for_graph(processor_collector.base_url, SETTLE_TIMEOUT)
    p = browser.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: m.type == "error" and errors.append(m.text))
    p.on("response", lambda r: r.status >= 400 and errors.append(f"HTTP {r.status} for {r.url}"))
    p.goto(f"http://{LOOPBACK}:{processor_collector.ports['metrics']}/", timeout=LOAD_TIMEOUT_MS)
    p.wait_for_selector("body[data-loaded=true]", timeout=LOAD_TIMEOUT_MS)
    for name in expect_map.nodes():
        p.wait_for_selector(f'g.node[data-id="{name}"]', timeout=LOAD_TIMEOUT_MS)
    p.errors = errors
    yield p
    p.close()


def select(page, name):
    """Clicks a node and waits (bounded) until the panel shows its impact."""
    page.click(f'#map g.node[data-id="{name}"]', timeout=CLICK_TIMEOUT_MS)
    page.wait_for_function(
        """name => { const h = document.getElementById("selected");
                     const g = document.querySelector(`#map g.node[data-id="${name}"]`);
                     return h && h.textContent.startsWith(name + " ") && g && g.classList.contains("selected"); }""",
        arg=name, timeout=CLICK_TIMEOUT_MS)


def highlight_classes(name):
    """{node: the classes it must have} once `name` is selected."""
    want = expect_map.impact(name)
    out = {}
    for node in expect_map.nodes():
        if node == name:
            out[node] = ["node", "selected"]
        elif node in want["dependents"]:
            out[node] = ["dependent", "node"]
        elif node in want["dependencies"]:
            out[node] = ["dependency", "node"]
        else:
            out[node] = ["dim", "node"]
        if node != name and node in want["suspects"]:
            out[node] = sorted(out[node] + ["suspect"])
    return out


def test_every_node_drawn_with_health_and_kind(page):
    drawn = page.evaluate(DRAWN_NODES)
    want = expect_map.nodes()
    assert {n: (d["health"], d["kind"]) for n, d in drawn.items()} == {
        n: (v["health"], v["kind"]) for n, v in want.items()}
    # Nothing is selected yet.
    assert all(d["classes"] == ["node"] for d in drawn.values()), drawn
    edges = sorted(tuple(e) for e in page.evaluate(DRAWN_EDGES))
    assert edges == sorted((c, s, e["health"]) for (c, s), e in expect_map.edges().items())
    assert list_items(page, "#root-causes") == expect_map.root_causes()
    assert page.text_content("#status").startswith(
        f"{len(want)} nodes, {len(expect_map.edges())} edges")


def test_every_edge_labelled_and_every_node_with_its_facts(page):
    # Rate and protocol, error rate and p99 on every edge, as the shop's
    # traffic gives them.
    want_labels = {key: edge_label(e) for key, e in expect_map.edges().items()}
    wait_until_drawn(page, labels_of, want_labels, "the edges' labels")
    assert want_labels[("payment", "stripe-api")][0] == f"{fmt_rate(4 / expect_map.WINDOW_SECONDS)}/s http"
    # The shop's services report a version; no owner, tier or deploy is
    # known, so the map draws no line for them.
    want_lines = node_lines(expect_map.nodes().values(), 0)
    assert {lines[1] for lines in want_lines.values()} == {None}
    wait_until_drawn(page, lambda p: p.evaluate(DRAWN_NODE_LINES), want_lines, "the nodes' lines")


def test_clicking_the_database_highlights_its_dependents(page, workdir, capsys):
    select(page, DATABASE)
    want = expect_map.impact(DATABASE)
    drawn = page.evaluate(DRAWN_NODES)
    assert {n: d["classes"] for n, d in drawn.items()} == highlight_classes(DATABASE)
    assert {n for n, d in drawn.items() if "dependent" in d["classes"]} == {"payment", "checkout", "frontend"}
    assert list_items(page, "#dependents") == want["dependents"]
    assert list_items(page, "#dependencies") == []
    assert page.text_content("#dependencies").strip() == "none"
    assert drawn_answer(page) == panel_answer(want)
    assert page.text_content("#selected").split() == [DATABASE, want["health"]]
    assert page.text_content("#blast") == f"{fmt_rate(want['blast_radius_rps'])} requests/s reach it directly"

    path = os.path.join(workdir, "map.png")
    page.screenshot(path=path)
    with capsys.disabled():
        print(f"\nmap page screenshot: {path}")


def test_clicking_a_service_highlights_both_ways(page):
    select(page, SERVICE)
    want = expect_map.impact(SERVICE)
    drawn = page.evaluate(DRAWN_NODES)
    assert {n: d["classes"] for n, d in drawn.items()} == highlight_classes(SERVICE)
    assert {n for n, d in drawn.items() if "dependency" in d["classes"]} == {"pg-primary", "stripe-api"}
    assert list_items(page, "#dependents") == want["dependents"]
    assert list_items(page, "#dependencies") == want["dependencies"]
    # The incident answer in words, the cause's evidence with its numbers,
    # the recovery order as numbered steps.
    assert drawn_answer(page) == panel_answer(want)
    assert drawn_answer(page) == PAYMENT_ANSWER


def test_clear_selection(page):
    page.click("#clear", timeout=CLICK_TIMEOUT_MS)
    page.wait_for_function(
        """() => [...document.querySelectorAll("#map g.node")].every(g => g.className.baseVal === "node")""",
        timeout=CLICK_TIMEOUT_MS)
    assert page.query_selector("#selected") is None


def test_no_script_errors(page):
    assert page.errors == []


# --- The demo's map: the README's picture ----------------------------------

README = os.path.join(harness.ROOT, "README.md")
DEMO_CONFIG = os.path.join(harness.ROOT, "examples", "processor.yaml")
DEMO_CATALOG = os.path.join(harness.ROOT, "examples", "catalog.json")
# payment is rolled out at a new version halfway through the traffic (the
# Makefile's DEMO_ROLLOUT_AT puts it a tenth of the way into the demo).
DEMO_ROLLOUT_AT = 0.5
DEMO_VERSIONS = {"frontend": "2.3.1", "checkout": "1.8.0", "payment": "0.10.0", "shipping": "3.0.2"}
# The Makefile's DEMO_RATE; the traffic runs this long (the demo's 10 minutes
# would show the same map with larger rates).
DEMO_RATE = 20
DEMO_SECONDS = 10
DEMO_DATABASE = "postgres"
# The demo's topology (go-shim/cmd/demotraffic): every node's kind, and each
# edge's connection type and protocol.
DEMO_NODES = {
    "user": "user", "frontend": "service", "checkout": "service", "payment": "service",
    "shipping": "service", "postgres": "database", "payments-gateway": "external",
}
DEMO_EDGES = {
    ("user", "frontend"): ("virtual_node", "http"),
    ("frontend", "checkout"): ("", "http"),
    ("checkout", "postgres"): ("database", "postgresql"),
    ("checkout", "payment"): ("", "grpc"),
    ("checkout", "shipping"): ("messaging_system", "kafka"),
    ("payment", "payments-gateway"): ("virtual_node", "http"),
}
# Edges on which every failed trace fails; a failed trace publishes no
# shipment. (The payment gateway's edge fails for some of them only.)
DEMO_FAILING_WITH_EVERY_FAILED_TRACE = {("user", "frontend"), ("frontend", "checkout"), ("checkout", "payment")}
DEMO_SENT = re.compile(
    r"^demotraffic: sent (\d+) traces \((\d+) with errors\) in \d+ requests, 0 requests failed$", re.M)
# The store's wait in examples/processor.yaml is 10 s: virtual-node edges
# appear that long after their last span.
DEMO_SETTLE_TIMEOUT = 60.0


def readme_picture():
    """The path of the README's one picture, as the README gives it."""
    with open(README, encoding="utf-8") as f:
        pictures = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", f.read())
    assert len(pictures) == 1, f"README.md should show one picture, shows {pictures}"
    return pictures[0]


def png_size(path):
    """(width, height) from a PNG file's header."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def demo_edges(sent, failed):
    """{(client, server): (connection type, protocol, rate)} that the demo's
    map must show after `sent` traces, `failed` of them failed."""
    return {key: (conn, protocol, (sent - failed if key == ("checkout", "shipping") else sent)
                  / expect_map.WINDOW_SECONDS)
            for key, (conn, protocol) in DEMO_EDGES.items()}


def demo_error_rates(sent, failed):
    """{(client, server): error rate} of the demo's edges whose failures are
    known from the counts alone: all but the payment gateway's."""
    return {key: failed / sent if key in DEMO_FAILING_WITH_EVERY_FAILED_TRACE else 0.0
            for key in DEMO_EDGES if key != ("payment", "payments-gateway")}


@pytest.fixture(scope="module")
def demo(workdir):
    """The demo's collector once the demo's traffic has been sent and its map
    has settled: (collector, traces sent, traces failed, (when the traffic
    started, when it ended) in Unix nanoseconds)."""
    traffic = harness.demotraffic_binary()
    collector = start_collector("demo", processor_ports_over, workdir, base_configs=[DEMO_CONFIG])
    try:
        started = time.time_ns()
        result = subprocess.run(
            [traffic, "-endpoint", f"http://{LOOPBACK}:{collector.ports['http']}/v1/traces",
             "-rate", str(DEMO_RATE), "-duration", f"{DEMO_SECONDS}s", "-rollout-at", str(DEMO_ROLLOUT_AT)],
            capture_output=True, text=True, timeout=DEMO_SECONDS + 60)
        ended = time.time_ns()
        assert result.returncode == 0, result.stdout + result.stderr
        m = DEMO_SENT.search(result.stdout)
        assert m, f"no count of what demotraffic sent:\n{result.stdout}{result.stderr}"
        sent, failed = int(m.group(1)), int(m.group(2))
        assert sent > 0, result.stdout

        want_edges, want_errors = demo_edges(sent, failed), demo_error_rates(sent, failed)
        last = {}

        def settled():
            graph = expect_map.get_json(f"{collector.base_url}/api/graph")
            nodes = {n["id"]: n["kind"] for n in graph["nodes"]}
            edges = {(e["client"], e["server"]): e for e in graph["edges"]}
            last["got"] = (nodes, {k: (e["connection_type"], e["protocol"], e["rate"], e["error_rate"])
                                   for k, e in edges.items()})
            return (nodes == DEMO_NODES
                    and {k: (e["connection_type"], e["protocol"], e["rate"]) for k, e in edges.items()} == want_edges
                    and {k: edges[k]["error_rate"] for k in want_errors} == want_errors)

        try:
            harness.poll(settled, DEMO_SETTLE_TIMEOUT, interval=0.25, what="the demo's map")
        except harness.Timeout:
            raise AssertionError(f"the demo's map did not settle within {DEMO_SETTLE_TIMEOUT}s:\n"
                                 f"want {DEMO_NODES}\n     {want_edges}\n     error rates {want_errors}\n"
                                 f"got  {last.get('got')}") from None
        yield collector, sent, failed, (started, ended)
    finally:
        stop_collector(collector)


@pytest.fixture(scope="module")
def demo_page(browser, demo):
    """The map page of the demo's collector, loaded once its map has settled."""
    collector = demo[0]
    p = browser.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: m.type == "error" and errors.append(m.text))
    p.on("response", lambda r: r.status >= 400 and errors.append(f"HTTP {r.status} for {r.url}"))
    p.goto(f"{collector.base_url}/", timeout=LOAD_TIMEOUT_MS)
    p.wait_for_selector("body[data-loaded=true]", timeout=LOAD_TIMEOUT_MS)
    for name in DEMO_NODES:
        p.wait_for_selector(f'g.node[data-id="{name}"]', timeout=LOAD_TIMEOUT_MS)
    p.errors = errors
    yield p
    p.close()


def test_demo_map_drawn_as_its_api_gives_it(demo_page, demo):
    collector = demo[0]
    # Traffic has stopped and every edge is in: the map no longer changes.
    graph = expect_map.get_json(f"{collector.base_url}/api/graph")
    drawn = demo_page.evaluate(DRAWN_NODES)
    assert {n: (d["health"], d["kind"]) for n, d in drawn.items()} == {
        n["id"]: (n["health"], n["kind"]) for n in graph["nodes"]}
    assert {n: d["kind"] for n, d in drawn.items()} == DEMO_NODES
    assert all(d["classes"] == ["node"] for d in drawn.values()), drawn
    assert sorted(tuple(e) for e in demo_page.evaluate(DRAWN_EDGES)) == sorted(
        (e["client"], e["server"], e["health"]) for e in graph["edges"])
    assert list_items(demo_page, "#root-causes") == graph["root_causes"]
    assert demo_page.text_content("#status").startswith(f"{len(DEMO_NODES)} nodes, {len(DEMO_EDGES)} edges")


def test_demo_map_shows_owners_tiers_versions_and_the_deploy(demo_page, demo):
    collector, _, _, (started, ended) = demo
    graph = expect_map.get_json(f"{collector.base_url}/api/graph")
    nodes = {n["id"]: n for n in graph["nodes"]}
    with open(DEMO_CATALOG, encoding="utf-8") as f:
        catalog = json.load(f)["services"]
    # The catalog names every node but the user, and the map has its owners
    # and tiers; the services report their versions, payment the one it was
    # rolled out at, and the rollout is payment's deploy.
    assert set(catalog) == set(DEMO_NODES) - {"user"}
    assert {n: (v["owner"], v["tier"]) for n, v in nodes.items()} == {
        n: (catalog[n]["owner"], catalog[n]["tier"]) if n in catalog else ("", "") for n in DEMO_NODES}
    assert {n: v["version"] for n, v in nodes.items() if v["version"]} == DEMO_VERSIONS
    deploys = {n: v["last_deploy_unix_nano"] for n, v in nodes.items() if v["last_deploy_unix_nano"] is not None}
    assert list(deploys) == ["payment"]
    assert started < deploys["payment"] < ended

    # Drawn as the API gives them: every edge's label, every node's lines.
    # Traffic has stopped; the map no longer changes.
    wait_until_drawn(demo_page, labels_of, {(e["client"], e["server"]): edge_label(e) for e in graph["edges"]},
                     "the demo's edge labels")
    want_lines = node_lines(graph["nodes"], graph["at_unix_nano"])
    assert want_lines["payment"][1:] == [
        "team-payments · tier 1", f"0.10.0 · deployed {utc(deploys['payment']).strftime('%H:%M UTC')}"]
    wait_until_drawn(demo_page, lambda p: p.evaluate(DRAWN_NODE_LINES), want_lines, "the demo's node lines")

    # The panel of the service rolled out: its facts, and its incident answer.
    select(demo_page, "payment")
    assert demo_page.eval_on_selector_all("#facts div", "els => els.map(e => e.textContent)") == [
        "kind service", "owner team-payments", "tier 1", "version 0.10.0",
        f"last deploy {utc(deploys['payment']).strftime('%Y-%m-%d %H:%M:%S UTC')}", "environment demo"]
    want = expect_map.get_json(f"{collector.base_url}/api/impact?service=payment")
    assert drawn_answer(demo_page) == panel_answer(want)


def test_demo_database_selected_is_the_readme_picture(demo_page, demo, capsys):
    collector, sent = demo[:2]
    select(demo_page, DEMO_DATABASE)
    want = expect_map.get_json(f"{collector.base_url}/api/impact?service={DEMO_DATABASE}")
    # What depends on the database: checkout, which queries it, and frontend,
    # which calls checkout; the user is no service. It depends on nothing.
    assert (want["dependents"], want["dependencies"], want["recovery_order"], want["suspects"]) == (
        ["checkout", "frontend"], [], [DEMO_DATABASE, "checkout", "frontend"], [])
    assert want["blast_radius_rps"] == sent / expect_map.WINDOW_SECONDS
    drawn = demo_page.evaluate(DRAWN_NODES)
    assert {n: d["classes"] for n, d in drawn.items()} == {
        n: ["node", "selected"] if n == DEMO_DATABASE else ["dependent", "node"] if n in want["dependents"]
        else ["dim", "node"] for n in DEMO_NODES}
    assert list_items(demo_page, "#dependents") == want["dependents"]
    assert list_items(demo_page, "#dependencies") == []
    assert demo_page.text_content("#dependencies").strip() == "none"
    assert drawn_answer(demo_page) == panel_answer(want)
    assert list_items(demo_page, "#recovery") == ["1. postgres", "2. checkout", "3. frontend"]
    assert demo_page.text_content("#selected").split() == [DEMO_DATABASE, want["health"]]
    assert demo_page.text_content("#blast") == f"{fmt_rate(want['blast_radius_rps'])} requests/s reach it directly"

    picture = readme_picture()
    path = os.path.join(harness.ROOT, picture)
    demo_page.screenshot(path=path)
    assert png_size(path) == (VIEWPORT["width"], VIEWPORT["height"])
    with capsys.disabled():
        print(f"\nthe README's picture of the demo's map: {path}")


def test_demo_page_no_script_errors(demo_page):
    assert demo_page.errors == []
