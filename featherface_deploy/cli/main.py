"""Entry point of the ``featherface-deploy`` command."""

from __future__ import annotations

import signal

import click

from featherface_deploy import __version__
from featherface_deploy.cli.benchmark_cmd import benchmark
from featherface_deploy.cli.bundle_cmd import bundle
from featherface_deploy.cli.check_trt_cmd import check_trt
from featherface_deploy.cli.compare_cmd import compare
from featherface_deploy.cli.detect_cmd import detect
from featherface_deploy.cli.evaluate_cmd import evaluate
from featherface_deploy.cli.export_cmd import export
from featherface_deploy.cli.formats_cmd import formats
from featherface_deploy.cli.info_cmd import info
from featherface_deploy.cli.profile_cmd import profile


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="featherface-deploy")
def cli() -> None:
    """Export FeatherFace face detectors and run them on any backend with the same decoding."""


cli.add_command(benchmark)
cli.add_command(bundle)
cli.add_command(check_trt)
cli.add_command(compare)
cli.add_command(detect)
cli.add_command(evaluate)
cli.add_command(export)
cli.add_command(formats)
cli.add_command(info)
cli.add_command(profile)


def main() -> None:
    """Console-script entry point; ``SIGTERM`` ends it like ``Ctrl-C`` (staging removed, locks released)."""
    signal.signal(signal.SIGTERM, _terminated)
    cli()


def _terminated(signum, frame) -> None:
    """Unwinds on ``SIGTERM`` so every ``finally`` (an output's staging and lock) runs; exit status 143."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
