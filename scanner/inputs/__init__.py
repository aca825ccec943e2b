"""Inputs: find them (:mod:`.find`: files, folders, arrays), decode them to unit-range pixels
(:mod:`.decode`), stream them as bounded decoded batches (:mod:`.stream`), and read their true
labels where an evaluation needs them (:mod:`.labels`). Knows nothing about models."""
