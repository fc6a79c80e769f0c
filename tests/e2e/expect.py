"""Expected service-graph samples, built from per-request expectations, and
a readable comparison with a scrape."""

import math

import harness

PREFIX = "traces_service_graph_request"
# Classic bucket bounds (seconds) of the two presets.
TEMPO_BUCKETS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8)
CONTRIB_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15)


def le_text(bound):
    """A bucket bound as exposition writes it: shortest form, no trailing .0."""
    if math.isinf(bound):
        return "+Inf"
    text = repr(float(bound))
    return text[:-2] if text.endswith(".0") else text


def _key(name, labels):
    return (name, frozenset(labels.items()))


def _histogram(out, name, labels, values, buckets):
    out[_key(f"{name}_count", labels)] = float(len(values))
    out[_key(f"{name}_sum", labels)] = float(sum(values))
    for bound in list(buckets) + [math.inf]:
        out[_key(f"{name}_bucket", {**labels, "le": le_text(bound)})] = float(sum(1 for v in values if v <= bound))


def samples(edges, buckets, failed_label=False):
    """{(metric name, label set): value} of the request counters and both
    latency histograms for `edges`, which maps (client, server,
    connection_type or None) to [(failed, server seconds, client seconds)].

    Without failed_label (Tempo) each edge is one series and the failure
    counter exists only once a request failed. With it (contrib) each edge
    is split by failed="true"/"false" and the failure counter exists only
    on the failed="true" series."""
    out = {}
    for (client, server, conn), requests in edges.items():
        base = {"client": client, "server": server}
        if conn:
            base["connection_type"] = conn
        groups = {}
        for failed, server_s, client_s in requests:
            group = ("true" if failed else "false") if failed_label else None
            groups.setdefault(group, []).append((failed, server_s, client_s))
        for group, reqs in groups.items():
            labels = dict(base)
            if group is not None:
                labels["failed"] = group
            failed = sum(1 for f, _, _ in reqs if f)
            out[_key(f"{PREFIX}_total", labels)] = float(len(reqs))
            if failed:
                out[_key(f"{PREFIX}_failed_total", labels)] = float(failed)
            _histogram(out, f"{PREFIX}_server_seconds", labels, [s for _, s, _ in reqs], buckets)
            _histogram(out, f"{PREFIX}_client_seconds", labels, [c for _, _, c in reqs], buckets)
    return out


def actual(exposition, drop_prefixes=()):
    """The request counters and latency histograms of a scrape, with labels
    named with one of `drop_prefixes` and empty-valued labels left out
    (Prometheus treats an empty label as absent)."""
    out = {}
    for (name, labels), value in exposition.samples.items():
        if not name.startswith(PREFIX + "_"):
            continue
        kept = frozenset((k, v) for k, v in labels if v != "" and not k.startswith(tuple(drop_prefixes)))
        key = (name, kept)
        assert key not in out, f"two samples map to {key}"
        out[key] = value
    return out


def _fmt(key):
    name, labels = key
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels)) + "}"


def diff(got, want):
    """Empty string if equal, else the differences, one a line."""
    lines = []
    for key in sorted(set(want) | set(got), key=_fmt):
        if key not in got:
            lines.append(f"missing  {_fmt(key)} want {want[key]}")
        elif key not in want:
            lines.append(f"extra    {_fmt(key)} = {got[key]}")
        elif got[key] != want[key]:
            lines.append(f"differs  {_fmt(key)} = {got[key]} want {want[key]}")
    return "\n".join(lines)


def wait_for(scrape, want, timeout, drop_prefixes=()):
    """Scrapes until the service-graph samples equal `want` exactly; returns
    that scrape. Fails with the differences of the last scrape otherwise."""
    last = {"diff": "no scrape succeeded"}

    def matches():
        exposition = scrape()
        d = diff(actual(exposition, drop_prefixes), want)
        last["diff"] = d
        return exposition if not d else None

    try:
        return harness.poll(matches, timeout, interval=0.25, what="service-graph samples")
    except harness.Timeout:
        raise AssertionError(f"service-graph samples did not match within {timeout}s:\n{last['diff']}") from None
