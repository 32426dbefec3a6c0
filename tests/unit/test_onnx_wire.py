"""Finding tensors kept in other files, and the operators of every node, in a serialized ONNX model, wherever the
format puts them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
from google.protobuf.descriptor import FieldDescriptor
from onnx import TensorProto, helper

from stream_app.onnx_wire import NODE_FIELDS, TENSOR_FIELDS, has_external_data, operators

FIXTURE_MODEL = Path(__file__).parents[1] / "fixtures" / "model" / "model.onnx"


def ways_to(target: str) -> dict[str, dict[int, str]]:
    """Per message of the ONNX format (as the pinned onnx package's own descriptors say), its fields that hold or
    lead to a ``target`` message."""
    messages: dict[str, Any] = {}

    def collect(descriptor: Any) -> None:
        if descriptor.name not in messages:
            messages[descriptor.name] = descriptor
            for field in descriptor.fields:
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    collect(field.message_type)

    def leading(name: str, to: set[str]) -> dict[int, str]:
        fields = messages[name].fields
        return {f.number: f.message_type.name for f in fields if f.message_type and f.message_type.name in to}

    collect(onnx.ModelProto.DESCRIPTOR)
    leads = {target}
    while more := {name for name in messages if leading(name, leads)} - leads:
        leads |= more
    return {name: leading(name, leads) for name in leads}


def test_the_ways_to_a_tensor_and_to_a_node_are_those_of_the_onnx_format() -> None:
    """A field added to the format would be a way past the checks."""
    assert ways_to("TensorProto") == TENSOR_FIELDS
    assert ways_to("NodeProto") == NODE_FIELDS
    node = onnx.NodeProto.DESCRIPTOR.fields_by_name
    assert (node["op_type"].number, node["domain"].number) == (4, 7)
    tensor = TensorProto.DESCRIPTOR.fields_by_name
    assert (tensor["external_data"].number, tensor["data_location"].number) == (13, 14)


def weights(name: str = "w") -> TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, [2], [1.0, 2.0])


def model_of(nodes: list[onnx.NodeProto] = [], **graph: object) -> onnx.ModelProto:  # noqa: B006 - never mutated
    return helper.make_model(helper.make_graph(nodes, "g", [], [], **graph))  # type: ignore[arg-type]


def in_a_function(tensor: TensorProto) -> onnx.ModelProto:
    model = model_of()
    node = helper.make_node("Constant", [], ["c"], value=tensor)
    model.functions.append(helper.make_function("test", "f", [], ["c"], [node], [helper.make_opsetid("", 17)]))
    return model


def in_training_info(tensor: TensorProto) -> onnx.ModelProto:
    model = model_of()
    model.training_info.append(onnx.TrainingInfoProto(initialization=helper.make_graph([], "i", [], [], [tensor])))
    return model


PLACES: dict[str, Callable[[TensorProto], onnx.ModelProto]] = {
    "initializer": lambda t: model_of(initializer=[t]),
    "a Constant's value": lambda t: model_of([helper.make_node("Constant", [], ["c"], value=t)]),
    "a list of tensors": lambda t: model_of([helper.make_node("Op", [], ["c"], domain="test", many=[t, weights()])]),
    "a sparse initializer": lambda t: model_of(
        sparse_initializer=[helper.make_sparse_tensor(t, helper.make_tensor("i", TensorProto.INT64, [2], [0, 1]), [4])]
    ),
    "a subgraph's initializer": lambda t: model_of(
        [
            helper.make_node(
                "If",
                ["x"],
                ["y"],
                then_branch=helper.make_graph([], "t", [], [], [t]),
                else_branch=helper.make_graph([], "e", [], []),
            )
        ]
    ),
    "a function": in_a_function,
    "training info": in_training_info,
}


@pytest.mark.parametrize("how", ["location", "entries", "both"])
@pytest.mark.parametrize("place", PLACES)
def test_a_tensor_kept_in_another_file_is_found_wherever_it_is(place: str, how: str) -> None:
    """Marked by its data location, by where its data is, or both: onnxruntime reads either."""
    tensor = weights()
    if how != "entries":
        tensor.data_location = TensorProto.EXTERNAL
    if how != "location":
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "weights.bin"
    assert not has_external_data(PLACES[place](weights()).SerializeToString())
    assert has_external_data(PLACES[place](tensor).SerializeToString())


def test_the_exported_model_keeps_every_tensor_in_itself_and_bytes_that_are_not_protobuf_raise() -> None:
    model = FIXTURE_MODEL.read_bytes()
    assert not has_external_data(model)
    for broken in (model[: len(model) // 2], b"\xff" * 12, b"\x0b\x00"):  # cut short, a varint past 10 bytes, a group
        with pytest.raises(ValueError):
            has_external_data(broken)


def with_node(place: str, node: onnx.NodeProto) -> onnx.ModelProto:
    """A model with ``node`` at ``place``: its graph, a branch of an If, a function, a training graph."""
    if place == "graph":
        return model_of([node])
    if place == "a subgraph":
        branch = helper.make_graph([node], "t", [], [])
        return model_of([helper.make_node("If", ["x"], ["y"], then_branch=branch, else_branch=branch)])
    model = model_of()
    if place == "a function":
        model.functions.append(helper.make_function("test", "f", [], ["c"], [node], [helper.make_opsetid("", 17)]))
    else:
        model.training_info.append(onnx.TrainingInfoProto(algorithm=helper.make_graph([node], "a", [], [])))
    return model


@pytest.mark.parametrize("place", ["graph", "a subgraph", "a function", "training info"])
def test_a_node_s_operator_is_found_wherever_it_is(place: str) -> None:
    node = helper.make_node("Loop", ["n", "cond"], ["out"], domain="ai.onnx", body=helper.make_graph([], "b", [], []))
    found = operators(with_node(place, node).SerializeToString())
    assert ("", "Loop") in found
    custom = helper.make_node("Anything", [], ["c"], domain="evil.ops")
    assert ("evil.ops", "Anything") in operators(with_node(place, custom).SerializeToString())


def test_the_exported_model_s_operators_are_read_as_onnx_reads_them() -> None:
    model = FIXTURE_MODEL.read_bytes()
    loaded = onnx.load_from_string(model)
    assert operators(model) == {("" if n.domain == "ai.onnx" else n.domain, n.op_type) for n in loaded.graph.node}
    with pytest.raises(ValueError):
        operators(model[: len(model) // 2])
