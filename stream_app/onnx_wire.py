"""What a serialized ONNX model holds that the worker checks before onnxruntime loads it: tensors that keep their data
in another file ("external data"), and the operators of its nodes. Read from the protobuf wire format without the
``onnx`` package: importing that costs the worker close to a second at start-up, and these walks take milliseconds."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Final

TENSOR_FIELDS: Final[dict[str, dict[int, str]]] = {
    "ModelProto": {7: "GraphProto", 20: "TrainingInfoProto", 25: "FunctionProto"},
    "GraphProto": {1: "NodeProto", 5: "TensorProto", 15: "SparseTensorProto"},
    "NodeProto": {5: "AttributeProto"},
    "AttributeProto": {
        5: "TensorProto",
        6: "GraphProto",
        10: "TensorProto",
        11: "GraphProto",
        22: "SparseTensorProto",
        23: "SparseTensorProto",
    },
    "FunctionProto": {7: "NodeProto", 11: "AttributeProto"},
    "TrainingInfoProto": {1: "GraphProto", 2: "GraphProto"},
    "SparseTensorProto": {1: "TensorProto", 2: "TensorProto"},
    "TensorProto": {},
}
"""Per message of ``onnx-ml.proto``, its fields that hold (or lead to) a ``TensorProto``, by field number, and their
message: every way from a model to one of its tensors (a test checks them against the ``onnx`` package's)."""
NODE_FIELDS: Final[dict[str, dict[int, str]]] = {
    "ModelProto": {7: "GraphProto", 20: "TrainingInfoProto", 25: "FunctionProto"},
    "GraphProto": {1: "NodeProto"},
    "NodeProto": {5: "AttributeProto"},
    "AttributeProto": {6: "GraphProto", 11: "GraphProto"},
    "FunctionProto": {7: "NodeProto", 11: "AttributeProto"},
    "TrainingInfoProto": {1: "GraphProto", 2: "GraphProto"},
}
"""The same for the fields that hold (or lead to) a ``NodeProto``."""
EXTERNAL_DATA: Final = 13
"""``TensorProto.external_data``: where in another file a tensor's data is."""
DATA_LOCATION: Final = 14
"""``TensorProto.data_location``: ``DEFAULT`` (0), in the model, or ``EXTERNAL``."""
OP_TYPE: Final = 4
DOMAIN: Final = 7
"""``NodeProto.op_type`` and ``NodeProto.domain``: which operator a node runs."""
DEFAULT_DOMAINS: Final = frozenset(("", "ai.onnx"))
"""The names of ONNX's own operator set."""
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
"""Protobuf's wire types: what follows a field's key."""


@functools.cache
def _numbers_run(kept: frozenset[int] = frozenset()) -> re.Pattern[bytes]:
    """A run of number fields (varint, 32 or 64 bits) whose keys are one byte (field numbers up to 15), but for the
    varint fields ``kept``: matched in C, since a model's attributes hold tens of thousands of such fields."""

    def keys(wire: int) -> bytes:
        return b"".join(re.escape(bytes([key])) for key in range(8, 0x80) if key & 7 == wire and key >> 3 not in kept)

    varint, fixed32, fixed64 = keys(_VARINT), keys(_FIXED32), keys(_FIXED64)
    run = rb"(?:[%s][\x80-\xff]{0,9}[\x00-\x7f]|[%s].{4}|[%s].{8})*" % (varint, fixed32, fixed64)
    return re.compile(run, re.DOTALL)


def _fields(
    model: bytes, nested: Mapping[str, Mapping[int, str]], kept: Mapping[str, frozenset[int]]
) -> Iterator[tuple[str, int, int, int, int]]:
    """Every field of each message reachable from the model through ``nested``, as ``(message, at, field, start,
    end)``: ``at`` tells the message apart (where it starts), and a length-delimited field is ``model[start:end]``.
    A varint field of ``kept[message]`` comes as its value in ``start`` and -1 in ``end``; other number fields are
    skipped. Raises :class:`ValueError` when ``model`` is not protobuf.

    Every occurrence of a field is read, so a field that a parser merges from several pieces is seen in each."""
    pending = [("ModelProto", 0, len(model))]
    while pending:
        message, position, end = pending.pop()
        at, inner, watched = position, nested.get(message, {}), kept.get(message, frozenset())
        numbers = _numbers_run(watched)
        while position < end:
            key, after = _varint(model, position, end)
            wire, field = key & 7, key >> 3
            if wire == _LENGTH:
                length, after = _varint(model, after, end)
                yield message, at, field, after, after + length
                if field in inner:  # read once this message is: past its end, it raises first
                    pending.append((inner[field], after, after + length))
                position = after + length
            elif wire == _VARINT and field in watched:
                value, position = _varint(model, after, end)
                yield message, at, field, value, -1
            elif after == position + 1 and wire in (_VARINT, _FIXED32, _FIXED64):
                run = numbers.match(model, position, end)
                if run is None or run.end() == position:  # a field number 0, or a number past the end
                    raise ValueError(f"a malformed number field in {message}")
                position = run.end()
            elif wire == _VARINT:
                position = _varint(model, after, end)[1]
            elif wire in (_FIXED32, _FIXED64):
                position = after + (4 if wire == _FIXED32 else 8)
            else:  # groups: not in onnx-ml.proto
                raise ValueError(f"wire type {wire} in {message}")
        if position > end:
            raise ValueError(f"a field of {message} runs past its end")


def has_external_data(model: bytes) -> bool:
    """Whether a tensor of the serialized ONNX ``model`` says its data is elsewhere: a ``data_location`` other than
    ``DEFAULT``, or any ``external_data`` entry; raises :class:`ValueError` when ``model`` is not protobuf."""
    for message, _, field, start, end in _fields(model, TENSOR_FIELDS, {"TensorProto": frozenset((DATA_LOCATION,))}):
        if message == "TensorProto":
            if (field == EXTERNAL_DATA and end >= 0) or (field == DATA_LOCATION and end < 0 and start != 0):
                return True
    return False


def operators(model: bytes) -> set[tuple[str, str]]:
    """``(domain, op_type)`` of every node of the serialized ONNX ``model``: of its graph, their subgraphs, its
    functions and training graphs (ONNX's own operators in the domain ``""``); raises :class:`ValueError` when
    ``model`` is not protobuf, or a name is not UTF-8."""
    nodes: dict[int, list[str]] = {}
    for message, at, field, start, end in _fields(model, NODE_FIELDS, {}):
        if message == "NodeProto" and field in (OP_TYPE, DOMAIN):
            names = nodes.setdefault(at, ["", ""])
            names[field == OP_TYPE] = model[start:end].decode()  # the last occurrence wins, as parsers merge them
    return {("" if domain in DEFAULT_DOMAINS else domain, op_type) for domain, op_type in nodes.values()}


def _varint(data: bytes, position: int, end: int) -> tuple[int, int]:
    """The base-128 integer at ``position`` and the position after it; :class:`ValueError` past ``end`` or 10
    bytes."""
    value = shift = 0
    while position < end and shift < 70:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    raise ValueError("a malformed varint")
