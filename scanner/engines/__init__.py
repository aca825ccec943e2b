"""Engines beyond the local scan (which is :meth:`scanner.core.Scanner.scan`): one scan on a Ray
cluster with Ray Data actor pools (:mod:`.ray_data`), and per-input result shards and their
merge (:mod:`.shards`). Same results as the local scan."""
