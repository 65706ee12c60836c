"""Benchmark harness: latency, accuracy and parity of every backend and precision, side by side.

- :mod:`.latency`: timing of any runtime (numpy only): pre / inference / post split,
  percentiles, interleaved runs, peak memory, file size.
- :mod:`.report`: Markdown / CSV / JSON tables and the accuracy-vs-latency plot.
- :mod:`.artifacts`: which artifacts ``compare`` builds, how, and their cache.
- :mod:`.compare`: the ``compare`` orchestration.
- :mod:`.peers`: other face detectors (YuNet, Ultra-Light) behind the same ``Detections``.
- :mod:`.claims`: the design documents' numeric claims next to measured values.

Nothing is imported here, so importing the package loads no backend.
"""
