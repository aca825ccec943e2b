"""The ONNX boundary: read the file once (:mod:`.onnx_file`), check the runtime (:mod:`.runtime`),
resolve the preprocessing and the output (:mod:`.spec`, :mod:`.resolve`, :mod:`.preprocess`),
plan and verify how batches reach the session (:mod:`.batch_plan`), run it (:mod:`.runner`);
:mod:`.loader` assembles these into a :class:`~scanner.model.loader.Model`, and :mod:`.probe`
finds the preprocessing from sample inputs. Nothing here knows a detector or a decision."""
