"""Decisions from scores, typed and pure: benign references and conformal p-values
(:mod:`.reference`), calibrations (:mod:`.calibration`), which score decides and at what threshold
(:mod:`.scoring`), the per-class counts, model verdict and CI gate (:mod:`.verdict`), and the
paper's metrics (:mod:`.metrics`). Knows no report and no command line."""
