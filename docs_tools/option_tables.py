"""Options tables of the format rows: generated from the options' declarations
(:func:`featherface_deploy.pipeline.options.options_markdown`, which reads each field's
:class:`~featherface_deploy.option_fields.ExportOption` and its class docstring's ``Attributes:``).
"""

from featherface_deploy.pipeline.options import options_markdown, options_rows

__all__ = ["options_markdown", "options_rows"]
