"""Export options are declared once (a field of the exporter's options class); rows, CLI and docs derive from it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from featherface_deploy.cli.main import cli
from featherface_deploy.cli.option_flags import format_option_fields
from featherface_deploy.export_options import IMGSZ, OnnxOptions
from featherface_deploy.formats import FORMATS, get_format, resolve
from featherface_deploy.option_fields import ExportOption, declared_options, help_text, option_fields, parse_size
from featherface_deploy.pipeline.options import options_markdown


def test_every_row_option_is_a_declared_field_and_every_cli_option_has_its_flag():
    export_help = CliRunner().invoke(cli, ["export", "--help"], terminal_width=400).output
    offered = format_option_fields()
    for row in FORMATS:
        if row.options_class is None:
            continue
        declared = {item.name: item for item in option_fields(resolve(row.options_class))}
        for name in row.options:
            item = declared[name]
            assert item.taken_at(row.precision)
            if item.option.cli:
                assert name in offered and item.flag in export_help, name


def test_rows_take_only_the_options_of_their_precision():
    assert "float_io" in get_format("tflite-int8").options and "float_io" not in get_format("tflite").options
    assert "io_dtype" in get_format("coreml-fp16").options and "io_dtype" not in get_format("coreml").options
    assert "calib_dir" in get_format("trt-recipe-int8").options and "calib_dir" not in get_format("trt-recipe").options
    assert "quantize_bias" not in get_format("onnx-int8").options  # a field, not a user option


def test_help_shows_the_declared_default_and_the_cli_parses_with_the_declaration():
    export_help = " ".join(CliRunner().invoke(cli, ["export", "--help"], terminal_width=400).output.split())
    assert "Input size N or HxW, multiples of 32 [640]." in export_help
    assert "onnx: simplify the graph [on]." in export_help
    assert "[ONNX 0.99, TFLite 0.985]" in export_help
    result = CliRunner().invoke(cli, ["export", "--format", "onnx", "--imgsz", "axb"])
    assert result.exit_code == 2 and "Invalid value for '--imgsz': expected N or HxW, got 'axb'" in result.output


def test_one_name_declared_twice_differently_is_refused():
    @dataclass(frozen=True)
    class Other:
        imgsz: int = ExportOption("another size").field(32)

    assert declared_options([OnnxOptions])["imgsz"] is IMGSZ
    with pytest.raises(ValueError, match="option 'imgsz' is declared twice"):
        declared_options([OnnxOptions, Other])


def test_parse_size_and_help_text():
    assert parse_size("480x640") == (480, 640) and parse_size("64") == (64, 64)
    with pytest.raises(ValueError, match="positive"):
        parse_size("0")
    imgsz = next(item for item in option_fields(OnnxOptions) if item.name == "imgsz")
    assert help_text(imgsz) == "Input size N or HxW, multiples of 32 [640]."


def test_options_markdown_lists_a_row_and_the_rows_it_is_built_from():
    table = options_markdown("onnx-int8").splitlines()
    assert table[0] == "| Option | Default | Row | What it does |"
    rows = {line.split(" | ")[0].strip("| `"): line for line in table[2:]}
    assert set(rows) >= {"--calib-dir", "--search-budget", "--dynamic", "--simplify"}
    assert "`onnx-int8`" in rows["--calib-dir"] and "`onnx`" in rows["--dynamic"]
    assert "`100`" in rows["--calib-images"] and "`(640, 640)`" in rows["--imgsz"]
    assert len(rows) == len(set(get_format("onnx-int8").options) | set(get_format("onnx").options))
    assert "`int8_mode` (Python API only)" in options_markdown("coreml-int8w")
