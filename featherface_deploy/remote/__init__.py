"""Running the exact artifact on a target device and bringing its numbers back.

- :mod:`.bundle`: builds a self-contained device bundle (model, sidecar, runner, the package's own
  runtime-side modules) — host side.
- :mod:`.device_main`, :mod:`.device_facts`, :mod:`.image_pack`, :mod:`.device_requirements`: what runs *on the
  device* (Python ≥ 3.8, numpy and the model's runtime only); copied into every bundle.
- :mod:`.ssh`, :mod:`.ssh_device`: the OpenSSH client and the ssh runner (Linux boards, Jetson, Mac).
- :mod:`.adb_device`, :mod:`.benchmark_model_output`: Android through ``adb`` and TFLite's ``benchmark_model``.
- :mod:`.targets`: ``--remote`` values → a device; :mod:`.runs`: settings and the report every runner returns.
- :mod:`.packing`, :mod:`.remote_evaluate`: host-side image packs and ``evaluate --remote`` (AP on the host).
- :mod:`.fleet`, :mod:`.fleet_report`: ``compare --devices devices.toml``.

Nothing is imported here, so a device bundle can carry this package without its host-side modules.
"""
