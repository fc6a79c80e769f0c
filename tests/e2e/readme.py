"""The YAML blocks of README.md, and how a block that is part of a collector
configuration is made whole so that the collector can validate it.

Every ```yaml (or ```yml) block of the README is one of two things:

- a collector configuration, whole or a fragment: its top-level keys are
  among `receivers`, `processors`, `exporters`, `connectors`, `extensions` and
  `service`;
- something else (an OCB manifest), marked as such by the line just before its
  opening fence (blank lines aside), which starts with NOT_A_CONFIG. Only
  manifests (a top-level `dist`) may carry the marker.

A fragment is made whole by a second configuration file that the collector
merges over the block (`--config=block --config=wrap`), so the block itself
is validated exactly as written. `wrap_for` builds that file by two rules,
applied in this order:

1. A block without a `service` section shows only components' settings. Each
   extension it defines is listed in `service.extensions`; each receiver,
   processor, exporter and connector it defines goes into a pipeline of its
   own, of the first signal (traces, metrics, logs) that the collector's
   `components` command says it supports, with the `otlp` receiver before it
   and the `debug` exporter after it where the pipeline needs them. A
   connector from signal A to B gets an A pipeline ending in it and a B
   pipeline starting from it.
2. Each component that the service section names (pipelines' receivers,
   processors and exporters; `service.extensions`) and the block does not
   define is defined with STAND_INS[its type]. A component type without a
   stand-in is an error: stand-ins are listed here, not guessed.

A whole configuration (every examples/*.yaml) needs no wrap: `wrap_for`
returns {} for it.
"""

import re

import yaml

NOT_A_CONFIG = "<!-- not a collector configuration"
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")
SIGNALS = ("traces", "metrics", "logs")

# Settings for components that a README fragment uses without defining them:
# the least each needs to validate. Addresses are placeholders; nothing is
# started by `validate`.
STAND_INS = {
    ("receivers", "otlp"): {"protocols": {"grpc": {"endpoint": "localhost:4317"},
                                          "http": {"endpoint": "localhost:4318"}}},
    ("processors", "batch"): {},
    ("exporters", "debug"): {},
    ("exporters", "otlp_grpc"): {"endpoint": "traces-backend.example:4317"},
    ("exporters", "otlp_http"): {"endpoint": "https://traces-backend.example:4318"},
    ("exporters", "prometheus"): {"endpoint": "localhost:8889"},
}

_FENCE_OPEN = re.compile(r"^```(yaml|yml)\s*$")


class Block:
    def __init__(self, line, text, marked):
        self.line = line          # 1-based line of the opening fence
        self.text = text
        self.marked = marked      # preceded by NOT_A_CONFIG

    @property
    def id(self):
        return f"README.md:{self.line}"

    def parse(self):
        return yaml.safe_load(self.text)


def yaml_fence_count(path):
    """Opening ```yaml/```yml fences, counted line by line on their own."""
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if _FENCE_OPEN.match(line.rstrip("\n")))


def yaml_blocks(path):
    """Every ```yaml/```yml block of the Markdown file at `path`."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks = []
    previous = ""   # the last non-blank line outside a block
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            start = i
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
            if end is None:
                raise AssertionError(f"{path}:{start + 1}: a code block that is never closed")
            if _FENCE_OPEN.match(line):
                blocks.append(Block(start + 1, "\n".join(lines[start + 1:end]) + "\n",
                                    previous.startswith(NOT_A_CONFIG)))
            previous = ""
            i = end + 1
            continue
        if line.strip():
            previous = line.strip()
        i += 1
    return blocks


def is_collector_config(config):
    return isinstance(config, dict) and bool(config) and set(config) <= set(SECTIONS) | {"service"}


def component_type(component_id):
    return component_id.split("/", 1)[0]


def signals(components, kind, component_id):
    """The signals a receiver, processor or exporter supports (for a connector,
    its "a-to-b" pairs), in SIGNALS order, from `components` output."""
    entry = next((c for c in components.get(kind) or [] if c["name"] == component_id.split("/", 1)[0]), None)
    if entry is None:
        raise AssertionError(f"{kind[:-1]} {component_type(component_id)!r} is not in the collector")
    supported = {k for k, v in (entry.get("stability") or {}).items() if v != "Undefined"}
    if kind == "connectors":
        return [f"{a}-to-{b}" for a in SIGNALS for b in SIGNALS if f"{a}-to-{b}" in supported]
    return [s for s in SIGNALS if s in supported]


def _first(options, kind, component_id):
    if not options:
        raise AssertionError(f"{kind[:-1]} {component_id!r} supports no pipeline signal")
    return options[0]


def _service_for(config, components):
    """Rule 1: a service section for a block that has none."""
    pipelines = {}
    for kind in ("receivers", "processors", "exporters", "connectors"):
        for cid in (config.get(kind) or {}):
            name = f"{cid.replace('/', '-')}-{kind[:-1]}"
            if kind == "connectors":
                a, b = _first(signals(components, kind, cid), kind, cid).split("-to-")
                pipelines[f"{a}/{name}-in"] = {"receivers": ["otlp"], "exporters": [cid]}
                pipelines[f"{b}/{name}-out"] = {"receivers": [cid], "exporters": ["debug"]}
                continue
            signal = _first(signals(components, kind, cid), kind, cid)
            pipeline = {"receivers": ["otlp"], "exporters": ["debug"]}
            if kind == "receivers":
                pipeline["receivers"] = [cid]
            elif kind == "processors":
                pipeline["processors"] = [cid]
            else:
                pipeline["exporters"] = [cid]
            pipelines[f"{signal}/{name}"] = pipeline
    service = {"pipelines": pipelines}
    if config.get("extensions"):
        service["extensions"] = list(config["extensions"])
    return service


def wrap_for(config, components):
    """What to merge over a README block (or example) to make it a whole
    configuration: {} when it is whole already."""
    wrap = {}
    service = config.get("service")
    if service is None:
        service = wrap["service"] = _service_for(config, components)
    defined = {kind: set(config.get(kind) or {}) for kind in SECTIONS}
    used = []   # (kind, id) in the order the service section names them
    for pipeline in (service.get("pipelines") or {}).values():
        for role, kind in (("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")):
            for cid in pipeline.get(role) or []:
                used.append((kind, cid))
    used += [("extensions", cid) for cid in service.get("extensions") or []]
    for kind, cid in used:
        if cid in defined[kind] or (kind in ("receivers", "exporters") and cid in defined["connectors"]):
            continue
        if cid in (wrap.get(kind) or {}):
            continue
        stand_in = STAND_INS.get((kind, component_type(cid)))
        if stand_in is None:
            raise AssertionError(f"{kind[:-1]} {cid!r} is used but not defined, and has no stand-in in readme.STAND_INS")
        wrap.setdefault(kind, {})[cid] = stand_in
    return wrap


_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


def env_vars(text):
    """The environment variables a configuration's text refers to."""
    return set(_ENV.findall(text))
