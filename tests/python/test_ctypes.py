"""Loads the shared library with ctypes and runs one batch through the C ABI.

The OTLP protobuf bytes are written here by hand, from the field numbers of
opentelemetry/proto/trace/v1/trace.proto, so this test does not share any
encoder with the Rust side. The C constants (formats, status codes, version)
are read from include/servicemap.h, the one place they are written down.
"""
import ctypes
import json
import os
import re
import struct

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.environ.get("SERVICEMAP_LIB", os.path.join(ROOT, "target", "release", "libservicemap.so"))
HEADER = os.path.join(ROOT, "include", "servicemap.h")

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)(.*)$", re.M)
_ENUM = re.compile(r"\benum[ \t\n]+(\w+)\s*\{(.*?)\}", re.S)
_INT = re.compile(r"-?[0-9]+")
_ENUMERATOR = re.compile(r"([A-Za-z_]\w*)\s*=\s*(-?[0-9]+)")


def header_constants(text, source="header"):
    """The constants of a C header: {name: int} for every `#define NAME
    <decimal integer>` and every enumerator, and {name: its text} for any
    other `#define` (an include guard, an expression), which `need` refuses.
    An enumerator not written `NAME = <integer>` or a name given twice is an
    error here."""
    text = _COMMENT.sub(" ", text)
    found = {}

    def put(name, value):
        if name in found:
            raise ValueError(f"{source}: {name} is defined twice")
        found[name] = value

    for name, body in _DEFINE.findall(text):
        body = body.strip()
        put(name, int(body) if _INT.fullmatch(body) else body)
    for enum, body in _ENUM.findall(text):
        entries = [e.strip() for e in body.split(",")]
        if entries and entries[-1] == "":
            entries.pop()   # the trailing comma
        for entry in entries:
            m = _ENUMERATOR.fullmatch(entry)
            if not m:
                raise ValueError(f"{source}: enum {enum}: {entry!r} is not NAME = <integer>")
            put(m.group(1), int(m.group(2)))
    return found


def need(found, *names, source="header"):
    """The integer values of `names`, in order. A name the header does not
    define, or defines as something other than an integer, is an error."""
    missing = [n for n in names if n not in found]
    if missing:
        raise KeyError(f"{source} does not define {', '.join(missing)}")
    other = [f"{n} as {found[n]!r}" for n in names if not isinstance(found[n], int)]
    if other:
        raise KeyError(f"{source} defines {', '.join(other)}, not as an integer")
    return [found[n] for n in names]


with open(HEADER, encoding="utf-8") as _f:
    C = header_constants(_f.read(), HEADER)
(SM_FORMAT_PROMETHEUS, SM_FORMAT_STATS_JSON, SM_STATUS_OK, SM_STATUS_INVALID_INPUT,
 SERVICEMAP_VERSION_MAJOR, SERVICEMAP_VERSION_MINOR, SERVICEMAP_VERSION_PATCH) = need(
    C, "SM_FORMAT_PROMETHEUS", "SM_FORMAT_STATS_JSON", "SM_STATUS_OK", "SM_STATUS_INVALID_INPUT",
    "SERVICEMAP_VERSION_MAJOR", "SERVICEMAP_VERSION_MINOR", "SERVICEMAP_VERSION_PATCH", source=HEADER)


class Buf(ctypes.Structure):
    _fields_ = [("ptr", ctypes.POINTER(ctypes.c_uint8)), ("len", ctypes.c_size_t)]


def load():
    lib = ctypes.CDLL(LIB)
    lib.sm_engine_new.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(Buf)]
    lib.sm_engine_consume.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.POINTER(Buf)]
    lib.sm_engine_render.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.POINTER(Buf), ctypes.POINTER(Buf)]
    lib.sm_engine_free.argtypes = [ctypes.c_void_p]
    lib.sm_buf_free.argtypes = [Buf]
    lib.sm_version.restype = ctypes.c_char_p
    lib.sm_version.argtypes = []
    lib.sm_version_number.restype = ctypes.c_uint32
    lib.sm_version_number.argtypes = []
    return lib


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, wire_type, payload):
    tag = varint(num << 3 | wire_type)
    if wire_type == 2:
        return tag + varint(len(payload)) + payload
    return tag + payload


def string_kv(key, value):
    any_value = field(1, 2, value.encode())
    return field(1, 2, key.encode()) + field(2, 2, any_value)


def span(trace_id, span_id, parent, kind, start, end):
    body = field(1, 2, trace_id) + field(2, 2, span_id)
    if parent:
        body += field(4, 2, parent)
    body += field(5, 2, b"op") + field(6, 0, varint(kind))
    body += field(7, 1, struct.pack("<Q", start)) + field(8, 1, struct.pack("<Q", end))
    return body


def resource_spans(service, spans):
    resource = field(1, 2, string_kv("service.name", service))
    scope = b"".join(field(2, 2, s) for s in spans)
    return field(1, 2, resource) + field(2, 2, scope)


def request():
    trace_id = bytes(range(16))
    client, server = b"\x01" * 8, b"\x02" * 8
    t0 = 1_767_225_600 * 10**9
    a = resource_spans("frontend", [span(trace_id, client, None, 3, t0, t0 + 250_000_000)])
    b = resource_spans("checkout", [span(trace_id, server, client, 2, t0 + 10_000_000, t0 + 210_000_000)])
    return field(1, 2, a) + field(1, 2, b)


def render(lib, engine, fmt):
    out, msg = Buf(), Buf()
    assert lib.sm_engine_render(engine, fmt, 0, ctypes.byref(out), ctypes.byref(msg)) == SM_STATUS_OK
    text = ctypes.string_at(out.ptr, out.len).decode()
    lib.sm_buf_free(out)
    return text


def test_one_batch_through_the_c_abi():
    lib = load()
    engine = ctypes.c_void_p()
    cfg = b'{"initial_zero": false}'
    assert lib.sm_engine_new(cfg, len(cfg), ctypes.byref(engine), None) == SM_STATUS_OK
    try:
        data = request()
        assert lib.sm_engine_consume(engine, data, len(data), 0, None) == SM_STATUS_OK
        msg = Buf()
        assert lib.sm_engine_consume(engine, data[:-5], len(data) - 5, 0, ctypes.byref(msg)) == SM_STATUS_INVALID_INPUT
        assert ctypes.string_at(msg.ptr, msg.len).decode().startswith("malformed OTLP traces batch at byte ")
        lib.sm_buf_free(msg)

        text = render(lib, engine, SM_FORMAT_PROMETHEUS)
        assert 'traces_service_graph_request_total{client="frontend",server="checkout"} 1.0' in text.splitlines()
        assert 'traces_service_graph_request_server_seconds_sum{client="frontend",server="checkout"} 0.2' in text.splitlines()
        assert 'traces_service_graph_request_client_seconds_sum{client="frontend",server="checkout"} 0.25' in text.splitlines()

        stats = json.loads(render(lib, engine, SM_FORMAT_STATS_JSON))
        assert stats["batches_accepted"] == 1
        assert stats["batches_rejected"] == 1
        assert stats["edges_completed"] == 1
    finally:
        lib.sm_engine_free(engine)


def test_library_is_the_headers_version():
    lib = load()
    assert lib.sm_version_number() == (
        SERVICEMAP_VERSION_MAJOR * 10000 + SERVICEMAP_VERSION_MINOR * 100 + SERVICEMAP_VERSION_PATCH)
    assert lib.sm_version().decode() == (
        f"{SERVICEMAP_VERSION_MAJOR}.{SERVICEMAP_VERSION_MINOR}.{SERVICEMAP_VERSION_PATCH}")


def test_header_constants_are_read_exactly():
    text = """
    /* #define SM_IN_A_COMMENT 9 */
    #define GUARD_H
    #define SM_A 0  // after the value
    #define SOME_EXPRESSION ((SM_A * 10) + 1)
    # define SM_B -7
    typedef enum sm_e {
      /** doc */
      SM_E_X = 0,
      SM_E_Y = 12,
    } sm_e;
    enum sm_e sm_f(void);
    """
    assert header_constants(text) == {"GUARD_H": "", "SM_A": 0, "SOME_EXPRESSION": "((SM_A * 10) + 1)",
                                      "SM_B": -7, "SM_E_X": 0, "SM_E_Y": 12}
    # Every SM_ constant of the real header is read, each as an integer: the
    # names on lines that define one are exactly the names read.
    with open(HEADER, encoding="utf-8") as f:
        lines = f.read().splitlines()
    written = {m.group(1) or m.group(2) for line in lines
               for m in [re.match(r"\s*#\s*define\s+(SM_\w+)|\s*(SM_\w+)\s*=", line)] if m}
    assert {k for k in C if k.startswith("SM_")} == written
    assert all(isinstance(C[k], int) for k in written)


@pytest.mark.parametrize("text, error", [
    ("#define SM_X 1\n#define SM_X 1\n", "SM_X is defined twice"),
    ("enum e { SM_X = 1, SM_Y };", "enum e: 'SM_Y' is not NAME = <integer>"),
    ("#define SM_X 1\nenum e { SM_X = 1 };", "SM_X is defined twice"),
])
def test_header_constants_refuse_what_they_cannot_read(text, error):
    with pytest.raises(ValueError) as e:
        header_constants(text, "t.h")
    assert str(e.value) == f"t.h: {error}"


def test_a_missing_or_unreadable_constant_is_an_error():
    found = header_constants("#define SM_A 1\n#define SM_B (SM_A + 1)\n#define SM_C 0x4\n#define SM_D\n")
    assert need(found, "SM_A") == [1]
    with pytest.raises(KeyError) as e:
        need(found, "SM_A", "SM_X", "SM_B", "SM_Y", source="t.h")
    assert e.value.args == ("t.h does not define SM_X, SM_Y",)
    with pytest.raises(KeyError) as e:
        need(found, "SM_A", "SM_B", "SM_C", "SM_D", source="t.h")
    assert e.value.args == ("t.h defines SM_B as '(SM_A + 1)', SM_C as '0x4', SM_D as '', not as an integer",)
