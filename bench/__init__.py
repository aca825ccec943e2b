"""Attack zoo and benchmarks for the SCALE-UP scanner (needs torch; never imported by ``scanner``)."""
