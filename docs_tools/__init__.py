"""Tools that keep the documentation generated from the code and the results files.

``python -m docs_tools.generate`` rewrites every generated section of ``README.md`` and ``docs/``;
``python -m docs_tools.generate --check`` only reports the stale ones (CI runs it through the tests).
"""
