"""Helpers shared by the test modules: the default scale set, a reference loop that feeds one
image at one scale at a time, and small image writers."""

import numpy as np
import onnxruntime as ort
from PIL import Image

import onnx_models as om

SCALES = (3, 5, 7, 9, 11)

# 8x8 RGB test pattern with every channel value distinct
RGB = (np.arange(8 * 8 * 3).reshape(8, 8, 3) * 5 % 256).astype(np.uint8)

RGB_FIXTURES = [
    "trigger_nchw", "trigger_old_opset", "trigger_nhwc", "trigger_flat", "trigger_fixed_batch1",
    "trigger_fixed_batch1_unrewritable", "trigger_fixed_batch4", "trigger_byte", "trigger_normalized_outside",
    "trigger_normalized_inside", "trigger_bgr", "trigger_labels_only", "trigger_probabilities",
    "trigger_logits_and_label", "trigger_external_data", "trigger_initializer_inputs", "trigger_unsorted_nodes",
]


def write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        mode = "L" if img.shape[-1] == 1 else "RGB"
        Image.fromarray(np.rint(img * 255).astype(np.uint8).squeeze(-1) if mode == "L" else
                        np.rint(img * 255).astype(np.uint8), mode).save(folder / f"img_{i:03d}.png")
    return folder


def brute_force(fx, images, scales=SCALES):
    """One image, one scale, one session call at a time; preprocessing by the fixture's own code."""
    session = ort.InferenceSession(str(fx.path), providers=["CPUExecutionProvider"])
    out_name = fx.output_name

    def label(img):
        x = om.to_model_input(img[None], fx.spec)
        if fx.batch and fx.batch > 1:
            x = np.concatenate([x, np.zeros((fx.batch - 1,) + x.shape[1:], np.float32)])
        y = session.run([out_name], {fx.input_name: x})[0]
        return int(np.asarray(y).reshape(len(x), -1)[0].argmax()) if fx.output_kind != "labels" else int(np.asarray(y).reshape(-1)[0])

    labels = np.array([label(img) for img in images])
    scaled = np.array([[label(om.scale_images(img[None], n)[0]) for n in scales] for img in images])
    return labels, scaled


def assert_bytes_and_floats_give_the_same_queries(detector, pre, pixels):
    """``detector`` builds bit-identical queries from uint8 ``pixels`` and from the same pixels as
    unit-range float32 (x / 255): the two ways a scan hands it images."""
    rows = (detector.queries_per_input * len(pixels),) + pre.model_shape
    a, b = np.empty(rows, np.float32), np.empty(rows, np.float32)
    detector.build_queries(pixels, a, pre)
    from scanner.inputs.decode import BYTE_MAX

    detector.build_queries(pixels.astype(np.float32) / BYTE_MAX, b, pre)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
