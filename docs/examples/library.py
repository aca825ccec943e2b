"""The library on the bundled sample: what docs/library.md shows (run by docs/gen.py from a folder
holding a copy of samples/)."""

from scanner import Scanner

scanner = Scanner("samples/model.onnx", calibration="samples/calibration.json")
print(repr(scanner))
result = scanner.scan(["samples/clean", "samples/triggered"])   # files, folders, .npy/.npz arrays
print(repr(result))
print(result)                                  # what `scanner scan` prints under its table
summary = result.summary()                     # typed: counts, per-class counts, the verdict
print(summary.verdict.status, [s.label for s in summary.verdict.suspects])
gate = result.gate(max_flagged=3)              # the CI gate; truthy when it passed
print(gate, bool(gate))
first = next(result.records())                 # one dict per scored input (the JSON report's rows)
print(first["input"], first["predicted_class"], round(first["q_profile"], 3), first["flagged"])
