"""Benchmarks: ingest, training rate against the model's ceiling, and Tune's overhead.

:mod:`rsray.bench.ingest` and :mod:`rsray.bench.training` sit above the layers they measure
(data, training, Tune); ``jobs/bench_ingest.py`` and ``jobs/bench_train.py`` run them.
"""
