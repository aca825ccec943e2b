"""scanner audit on the Ray engine gives the local run's result (the same seeded candidates)."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "audit"))
from test_audit import OPTS, TARGET, build, smooth_images  # noqa: E402

from scanner.audit import audit  # noqa: E402
from scanner.engines.ray_audit import audit as ray_audit  # noqa: E402


def test_ray_audit_equals_the_local_audit(tmp_path):
    model = build(tmp_path / "backdoored.onnx", TARGET)
    images = smooth_images(300)
    local = audit(model, images, options=OPTS, device="cpu")
    remote = ray_audit(model, images, options=OPTS, device="cpu", workers=2)
    assert remote.verdict.to_dict() == local.verdict.to_dict() and remote.verdict.targets == [TARGET]
    assert json.dumps([c.to_dict() for c in remote.classes]) == json.dumps([c.to_dict() for c in local.classes])
    assert remote.queries == local.queries
