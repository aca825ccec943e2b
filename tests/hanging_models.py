"""ONNX models that run (almost) forever, for the time-limit tests: a Loop of 10^12 iterations,
always or only when the whole batch is black."""

import onnx
from onnx import TensorProto as T
from onnx import helper as h


def _body():
    return h.make_graph(
        [h.make_node("Add", ["acc_in", "one_f"], ["acc_out"]), h.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
                 h.make_tensor_value_info("acc_in", T.FLOAT, [1])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("acc_out", T.FLOAT, [1])],
        initializer=[h.make_tensor("one_f", T.FLOAT, [1], [1.0])])


def loop_model(path, *, only_black: bool) -> str:
    """logits = [mean(x), -mean(x)] after a Loop of 10^12 steps (when ``only_black``: only if the
    batch's maximum is 0, so loading and verifying on ordinary inputs is quick)."""
    trips = [h.make_node("ReduceMax", ["input"], ["mx"], keepdims=0),
             h.make_node("Equal", ["mx", "zero_s"], ["is_black"]),
             h.make_node("Cast", ["is_black"], ["b64"], to=T.INT64),
             h.make_node("Mul", ["b64", "big"], ["trips"])] if only_black else [h.make_node("Identity", ["big"], ["trips"])]
    nodes = trips + [
        h.make_node("Loop", ["trips", "cond", "zero"], ["acc"], body=_body()),
        h.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
        h.make_node("Unsqueeze", ["m", "ax"], ["m1"]),
        h.make_node("Mul", ["acc", "tiny"], ["t"]),
        h.make_node("Add", ["m1", "t"], ["a"]),
        h.make_node("Neg", ["a"], ["b"]),
        h.make_node("Concat", ["a", "b"], ["logits"], axis=1)]
    graph = h.make_graph(
        nodes, "loop", [h.make_tensor_value_info("input", T.FLOAT, ["N", 3, 8, 8])],
        [h.make_tensor_value_info("logits", T.FLOAT, ["N", 2])],
        initializer=[h.make_tensor("big", T.INT64, [], [10**12]), h.make_tensor("cond", T.BOOL, [], [True]),
                     h.make_tensor("zero", T.FLOAT, [1], [0.0]), h.make_tensor("zero_s", T.FLOAT, [], [0.0]),
                     h.make_tensor("ax", T.INT64, [1], [1]), h.make_tensor("tiny", T.FLOAT, [], [0.0])])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 13)], ir_version=8), str(path))
    return str(path)
