"""Helpers the test files share (imported as ``support.<module>``: pytest puts ``tests/`` on ``sys.path``)."""
