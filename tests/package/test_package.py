"""The package as a whole: importing and scanning never import torch."""

import subprocess
import sys




def test_importing_and_scanning_never_imports_torch(tmp_path):
    code = (
        "import sys, numpy as np, onnx\n"
        "from onnx import helper as h, TensorProto as T\n"
        "g = h.make_graph([h.make_node('ReduceMean', ['x'], ['m'], axes=[2, 3], keepdims=0)], 'g',\n"
        "    [h.make_tensor_value_info('x', T.FLOAT, ['N', 3, 8, 8])], [h.make_tensor_value_info('m', T.FLOAT, ['N', 3])])\n"
        f"p = r'{tmp_path / 'm.onnx'}'\n"
        "onnx.save(h.make_model(g, opset_imports=[h.make_opsetid('', 13)], ir_version=8), p)\n"
        "import scanner, scanner.cli\n"
        "from scanner import Scanner\n"
        "Scanner(p, device='cpu').score_arrays(np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
