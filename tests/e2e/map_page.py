"""The map page as a person reads it, for the browser tests: how to start
Debian's Chromium, scripts that read the drawn map in one run, and the page's
number formats and sentences written again from what it states (index.html's
fmtRate, fmtPct, fmtDuration, fmtDeploy, edgeLabel, nodeLines, hurtText,
recoverySteps), to hold its text to the API's values."""

import datetime
import os
from decimal import ROUND_HALF_UP, Decimal

import harness

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


# One read of every node of the drawn map, in a single script run (the page
# redraws itself every few seconds).
DRAWN_NODES = """() => Object.fromEntries([...document.querySelectorAll("#map g.node")].map(g =>
    [g.dataset.id, {health: g.dataset.health, kind: g.dataset.kind, classes: [...g.classList].sort()}]))"""
DRAWN_EDGES = """() => [...document.querySelectorAll("#map g.edge")].map(g =>
    [g.dataset.client, g.dataset.server, g.dataset.health])"""
# Each edge's label, line by line; each node's lines under its name (null
# when the map draws no such line).
DRAWN_LABELS = """() => [...document.querySelectorAll("#map g.label")].map(g =>
    [g.dataset.client, g.dataset.server, [...g.querySelectorAll("tspan")].map(t => t.textContent)])"""
DRAWN_NODE_LINES = """() => Object.fromEntries([...document.querySelectorAll("#map g.node")].map(g =>
    [g.dataset.id, ["sub", "who", "release"].map(c => { const t = g.querySelector("text." + c);
                                                         return t ? t.textContent : null; })]))"""


def fmt_rate(r):
    """A rate as the page writes it (index.html's fmtRate; Number.toFixed
    rounds the exact value, halves up)."""
    places = 0 if r >= 10 else 2 if r >= 0.1 else 3
    return str(Decimal(r).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def fixed(v, places):
    """Number.toFixed: the exact value rounded half up."""
    return str(Decimal(v).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def fmt_pct(r):
    return fixed(r * 100, 1) + "%"


def fmt_duration(s):
    """A latency as the page writes it (index.html's fmtDuration)."""
    if s >= 1:
        return fixed(s, 2) + "s"
    ms = s * 1000
    return fixed(ms, 0) + "ms" if ms >= 10 else fixed(ms, 1) + "ms" if ms >= 1 else fixed(ms * 1000, 0) + "µs"


def utc(ns):
    """The instant of a time in nanoseconds, as the page's Date has it (the
    JSON number is a double; a Date drops the fraction of a millisecond)."""
    return datetime.datetime.fromtimestamp(int(float(ns) / 1e6) / 1000, datetime.timezone.utc)


def fmt_deploy(ns, at_ns):
    t = utc(ns)
    return t.strftime("%H:%M UTC") if t.date() == utc(at_ns).date() else t.strftime("%Y-%m-%d")


def edge_label(e):
    """The two lines of an edge's label (index.html's edgeLabel)."""
    rate = "–" if e["rate"] is None else fmt_rate(e["rate"])
    errors = "–" if e["error_rate"] is None else fmt_pct(e["error_rate"])
    return [f"{rate}/s" + (f" {e['protocol']}" if e["protocol"] else ""),
            f"{errors} err" + ("" if e["p99_seconds"] is None else f" · p99 {fmt_duration(e['p99_seconds'])}")]


def node_lines(nodes, at_ns):
    """{node: [traffic, owner and tier, version and last deploy]} as the page
    draws them under the names; a line no node has is not drawn (None)."""
    out = {}
    for n in nodes:
        rate = "–" if n["rate"] is None else fmt_rate(n["rate"])
        sub = (f"{rate}/s" + (f" · {fmt_pct(n['error_rate'])} err" if n["error_rate"] > 0 else "")
               if n["kind"] == "service" else n["kind"])
        who = " · ".join(x for x in (n["owner"], f"tier {n['tier']}" if n["tier"] else "") if x)
        deploy = n["last_deploy_unix_nano"]
        release = " · ".join(x for x in (n["version"], "" if deploy is None else f"deployed {fmt_deploy(deploy, at_ns)}")
                             if x)
        out[n["id"]] = [sub, who, release]
    for line in (1, 2):
        if not any(lines[line] for lines in out.values()):
            for lines in out.values():
                lines[line] = None
    return out


def numbered_steps(steps):
    """The recovery steps as the panel numbers them: one step per level, a
    cycle's members joined by "+"."""
    levels = {}
    for s in steps:
        levels.setdefault(s["level"], []).append(" + ".join(s["services"]) + (" (a cycle: together)" if s["cycle"] else ""))
    return [f"{i}. {', '.join(levels[level])}" for i, level in enumerate(sorted(levels), 1)]


def panel_answer(want):
    """The panel's incident answer in words for an /api/impact answer."""
    n, d = len(want["dependents"]), want["degraded_dependents"]
    hurt = "No dependents." if n == 0 else f"{n} dependent{'' if n == 1 else 's'}, " + (
        f"{len(d)} of them degraded ({', '.join(d)})." if d else "none of them degraded.")
    suspects = ", ".join(want["suspects"])
    cause = {"none": "none: it and everything it depends on are healthy", "self": "here",
             "downstream": f"downstream, in {suspects}", "upstream": f"upstream, from {suspects}"}
    return {
        "hurt": hurt,
        "users": f"Users affected: up to {fmt_rate(want['user_facing_rps'])} requests/s, "
                 f"{fmt_pct(want['user_facing_share'])} of user traffic (an upper bound from the graph)",
        "cause": f"Cause: {cause[want['root_cause_direction']]}",
        "evidence": want["evidence"],
        "recovery": numbered_steps(want["recovery_steps"]),
    }


def drawn_answer(page):
    return {
        "hurt": page.text_content("#hurt"),
        "users": page.text_content("#users"),
        "cause": page.text_content("#cause"),
        "evidence": list_items(page, "#evidence"),
        "recovery": list_items(page, "#recovery"),
    }


def wait_until_drawn(page, read, want, what):
    """Polls (bounded) until read(page) equals want: the page redraws from a
    fresh /api/graph every few seconds."""
    last = {}

    def drawn():
        last["got"] = read(page)
        return last["got"] == want

    try:
        harness.poll(drawn, SETTLE_TIMEOUT, interval=0.25, what=what)
    except harness.Timeout:
        raise AssertionError(f"{what}:\nwant {want}\ngot  {last.get('got')}") from None


def labels_of(page):
    return {(c, s): lines for c, s, lines in page.evaluate(DRAWN_LABELS)}


def list_items(page, selector):
    return page.eval_on_selector_all(f"{selector} li", "els => els.map(e => e.textContent.trim())")
