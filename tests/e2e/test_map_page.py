"""The live map page (`/`) in a real headless browser: Debian's Chromium,
driven by Playwright over the DevTools protocol. The page must draw every
node of the shop with its health and kind, and a click on a node must
highlight what depends on it and what it depends on, and list them with the
recovery order in the side panel. A screenshot of the map with the database
selected is written to the test's output directory (its path is printed);
with SERVICEMAP_MAP_SCREENSHOT=PATH it is copied there too (the README's
picture is docs/map.png)."""

import os
import shutil
import tempfile

import pytest

import expect_map
from harness import LOOPBACK

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Everything the page loads is on loopback.
    "--no-proxy-server",
]
VIEWPORT = {"width": 1200, "height": 700}
# Bounds for the page to load and to answer a click (milliseconds).
LOAD_TIMEOUT_MS = 30_000
CLICK_TIMEOUT_MS = 10_000
SETTLE_TIMEOUT = 60.0
DATABASE = "pg-primary"
SERVICE = "payment"


@pytest.fixture(scope="module")
def browser():
    """A Chromium with a fresh profile, closed (and its processes ended) at the end."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: run `make setup-test`", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `make setup-test`", pytrace=False)
    profile = tempfile.mkdtemp(prefix="servicemap-chromium-")
    pw = sync_playwright().start()
    context = None
    try:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT,
            timeout=LOAD_TIMEOUT_MS)
        yield context
    finally:
        if context is not None:
            context.close()
        pw.stop()
        shutil.rmtree(profile, ignore_errors=True)


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


# One read of every node of the drawn map, in a single script run (the page
# redraws itself every few seconds).
DRAWN_NODES = """() => Object.fromEntries([...document.querySelectorAll("#map g.node")].map(g =>
    [g.dataset.id, {health: g.dataset.health, kind: g.dataset.kind, classes: [...g.classList].sort()}]))"""
DRAWN_EDGES = """() => [...document.querySelectorAll("#map g.edge")].map(g =>
    [g.dataset.client, g.dataset.server, g.dataset.health])"""


def list_items(page, selector):
    return page.eval_on_selector_all(f"{selector} li", "els => els.map(e => e.textContent.trim())")


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


def test_clicking_the_database_highlights_its_dependents(page, workdir, capsys):
    select(page, DATABASE)
    want = expect_map.impact(DATABASE)
    drawn = page.evaluate(DRAWN_NODES)
    assert {n: d["classes"] for n, d in drawn.items()} == highlight_classes(DATABASE)
    assert {n for n, d in drawn.items() if "dependent" in d["classes"]} == {"payment", "checkout", "frontend"}
    assert list_items(page, "#dependents") == want["dependents"]
    assert list_items(page, "#dependencies") == []
    assert page.text_content("#dependencies").strip() == "none"
    assert list_items(page, "#recovery") == want["recovery_order"]
    assert page.text_content("#selected").split() == [DATABASE, want["health"]]
    assert page.text_content("#blast") == f"{want['blast_radius_rps']:.3f} requests/s reach it directly"

    path = os.path.join(workdir, "map.png")
    page.screenshot(path=path)
    with capsys.disabled():
        print(f"\nmap page screenshot: {path}")
    copy_to = os.environ.get("SERVICEMAP_MAP_SCREENSHOT")
    if copy_to:
        shutil.copyfile(path, copy_to)
        with capsys.disabled():
            print(f"map page screenshot copied to {copy_to}")


def test_clicking_a_service_highlights_both_ways(page):
    select(page, SERVICE)
    want = expect_map.impact(SERVICE)
    drawn = page.evaluate(DRAWN_NODES)
    assert {n: d["classes"] for n, d in drawn.items()} == highlight_classes(SERVICE)
    assert {n for n, d in drawn.items() if "dependency" in d["classes"]} == {"pg-primary", "stripe-api"}
    assert list_items(page, "#dependents") == want["dependents"]
    assert list_items(page, "#dependencies") == want["dependencies"]
    assert list_items(page, "#recovery") == want["recovery_order"]
    # The incident answer in words, the cause's evidence with its numbers.
    assert page.text_content("#cause") == f"Cause: downstream, in {', '.join(want['suspects'])}"
    assert list_items(page, "#evidence") == want["evidence"]
    n, d = len(want["dependents"]), want["degraded_dependents"]
    assert page.text_content("#hurt") == (
        f"{n} dependent{'' if n == 1 else 's'}, {len(d)} degraded ({', '.join(d)})." if d
        else f"{n} dependent{'' if n == 1 else 's'}, none degraded.")


def test_clear_selection(page):
    page.click("#clear", timeout=CLICK_TIMEOUT_MS)
    page.wait_for_function(
        """() => [...document.querySelectorAll("#map g.node")].every(g => g.className.baseVal === "node")""",
        timeout=CLICK_TIMEOUT_MS)
    assert page.query_selector("#selected") is None


def test_no_script_errors(page):
    assert page.errors == []
