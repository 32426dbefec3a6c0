"""Which tensors of a serialized ONNX model keep their data in another file ("external data"), read from the
protobuf wire format without the ``onnx`` package: importing that costs the worker close to a second at start-up,
and this walk takes milliseconds."""

from __future__ import annotations

import re
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
EXTERNAL_DATA: Final = 13
"""``TensorProto.external_data``: where in another file a tensor's data is."""
DATA_LOCATION: Final = 14
"""``TensorProto.data_location``: ``DEFAULT`` (0), in the model, or ``EXTERNAL``."""
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
"""Protobuf's wire types: what follows a field's key."""


def _numbers_run(skipped: int | None = None) -> re.Pattern[bytes]:
    """A run of number fields (varint, 32 or 64 bits) whose keys are one byte (field numbers up to 15), but for the
    varint field ``skipped``: matched in C, since a model's attributes hold tens of thousands of such fields."""

    def keys(wire: int) -> bytes:
        return b"".join(re.escape(bytes([key])) for key in range(8, 0x80) if key & 7 == wire and key >> 3 != skipped)

    varint, fixed32, fixed64 = keys(_VARINT), keys(_FIXED32), keys(_FIXED64)
    run = rb"(?:[%s][\x80-\xff]{0,9}[\x00-\x7f]|[%s].{4}|[%s].{8})*" % (varint, fixed32, fixed64)
    return re.compile(run, re.DOTALL)


_NUMBERS: Final = _numbers_run()
_TENSOR_NUMBERS: Final = _numbers_run(DATA_LOCATION)


def has_external_data(model: bytes) -> bool:
    """Whether a tensor of the serialized ONNX ``model`` says its data is elsewhere: a ``data_location`` other than
    ``DEFAULT``, or any ``external_data`` entry; raises :class:`ValueError` when ``model`` is not protobuf.

    Every occurrence of a field is read, so a tensor that says so in any of the pieces a parser merges is found."""
    pending = [("ModelProto", 0, len(model))]
    while pending:
        message, position, end = pending.pop()
        nested = TENSOR_FIELDS[message]
        tensor = message == "TensorProto"
        numbers = _TENSOR_NUMBERS if tensor else _NUMBERS
        while position < end:
            key, after = _varint(model, position, end)
            wire, field = key & 7, key >> 3
            if wire == _LENGTH:
                length, after = _varint(model, after, end)
                if tensor and field == EXTERNAL_DATA:
                    return True
                if field in nested:  # read once this message is: past its end, it raises first
                    pending.append((nested[field], after, after + length))
                position = after + length
            elif tensor and field == DATA_LOCATION and wire == _VARINT:
                value, position = _varint(model, after, end)
                if value != 0:
                    return True
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
    return False


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
