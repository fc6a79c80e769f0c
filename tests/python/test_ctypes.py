"""Loads the shared library with ctypes and runs one batch through the C ABI.

The OTLP protobuf bytes are written here by hand, from the field numbers of
opentelemetry/proto/trace/v1/trace.proto, so this test does not share any
encoder with the Rust side.
"""
import ctypes
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.environ.get("SERVICEMAP_LIB", os.path.join(ROOT, "target", "release", "libservicemap.so"))

SM_FORMAT_PROMETHEUS = 0
SM_FORMAT_STATS_JSON = 3
SM_STATUS_OK = 0
SM_STATUS_INVALID_INPUT = 3


class Buf(ctypes.Structure):
    _fields_ = [("ptr", ctypes.POINTER(ctypes.c_uint8)), ("len", ctypes.c_size_t)]


def load():
    lib = ctypes.CDLL(LIB)
    lib.sm_engine_new.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(Buf)]
    lib.sm_engine_consume.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.POINTER(Buf)]
    lib.sm_engine_render.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.POINTER(Buf), ctypes.POINTER(Buf)]
    lib.sm_engine_free.argtypes = [ctypes.c_void_p]
    lib.sm_buf_free.argtypes = [Buf]
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
