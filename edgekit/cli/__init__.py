"""The `edgekit` command line. Each verb lives in its own module and registers on `app`."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from edgekit.cli._common import STATE, app

# Verbs in pipeline order; each module registers its command(s) on `app` when imported.
VERB_MODULES = (
    "export", "simplify", "inspect", "quantize", "compile", "compare", "check", "bench", "gate",
    "run", "targets", "toolchain", "device", "zoo",
)


def _version(value: bool) -> None:
    if value:
        from edgekit import __version__

        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """PyTorch → ONNX → INT8 → compiled for a device, with accuracy and latency checks."""
    STATE["debug"] = debug


for _verb in VERB_MODULES:  # by name, so `--help` lists the verbs in pipeline order (they all ship with edgekit)
    importlib.import_module(f"edgekit.cli.{_verb}")


def main() -> None:
    app()
