"""Exporters: build model files from PyTorch checkpoints (torch lives here, never in the runtimes)."""
