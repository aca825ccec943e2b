"""Batch plans: symbolic, fixed batch 1 rewritten and verified, padded, one input per call."""

import pytest

import onnx_models as om
from scanner import Scanner


@pytest.mark.parametrize("name,mode", [
    ("trigger_nchw", "symbolic"), ("trigger_fixed_batch1", "rewritten"),
    ("trigger_fixed_batch1_unrewritable", "per-sample"), ("trigger_fixed_batch4", "padded"),
])
def test_batch_plan(tmp_path, name, mode):
    fx = getattr(om, name)(tmp_path)
    assert Scanner(fx.path, device="cpu", spec=fx.spec).model.plan.mode == mode
