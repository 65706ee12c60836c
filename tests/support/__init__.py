"""Helpers the test files share (imported as ``support.<module>``: pytest puts ``tests/`` on ``sys.path``;
benchmarks run from the repository root import them as ``tests.support.<module>``)."""
