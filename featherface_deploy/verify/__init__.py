"""Verification of exported models, apart from building them: parity, tolerance tiers, IoU and AP.

Used by the export pipeline, ``compare`` and the tests. numpy only (and the
runtimes' public ``infer``), so it runs wherever a runtime runs.
"""
