"""What every CLI verb shares: the Typer app, consoles, option aliases, error mapping, JSON output.

The CLI only parses and prints (fastapi-cli habit): verbs call the public API, render the typed
result with Rich, and map EdgekitError to the exit codes of design.md. Library code never
imports this module.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from edgekit.errors import EdgekitError

# emoji=False: user text such as `pkg.mod:boom` must not become an emoji (":boom:").
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)
STATE: dict[str, bool] = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])


def _normalize_json_flag(args: list[str]) -> list[str]:
    """`--json` alone means "JSON to stdout" (`--json -`); `--json FILE.json` writes a file."""
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--json":
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is None or (nxt != "-" and not nxt.endswith(".json")):
                out.append("-")
    return out


class EdgekitGroup(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _normalize_json_flag(list(args)))

    def list_commands(self, ctx: Any) -> list[str]:  # keep pipeline order, not alphabetical
        return list(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return _flags_without_metavar(super().get_command(ctx, cmd_name))

    def get_params(self, ctx: Any) -> list[Any]:
        return [_blank_metavar(p) for p in super().get_params(ctx)]

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Usage errors (missing argument, unknown command/option) as one line on stderr, exit 2.

        Click/Typer would draw a multi-line Rich box; edgekit's own errors are one line, so these are too.
        `edgekit` with no arguments prints the help and exits 0.
        """
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        exc_mod = _click_exceptions()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except exc_mod.NoArgsIsHelpError as exc:  # `edgekit` / `edgekit toolchain` alone: the help, exit 0
            text = exc.format_message()  # building the error rendered the help already (Rich); plain: its text
            if text.strip():
                sys.stdout.write(text + "\n")
            sys.exit(0)
        except exc_mod.UsageError as exc:
            from rich.markup import escape

            where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            err_console.print(f"[bold red]error[/]: {escape(exc.format_message())}{escape(where)}",
                              highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except exc_mod.ClickException as exc:
            from rich.markup import escape

            err_console.print(f"[bold red]error[/]: {escape(exc.format_message())}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except _abort_types() as exc:
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
                err_console.print("[bold red]interrupted[/]: nothing was written", highlight=False)
                sys.exit(130)
            err_console.print("[bold red]aborted[/]", highlight=False)
            sys.exit(1)
        # standalone_mode=False returns a typer.Exit's code, or the command's return value (None for our verbs)
        sys.exit(rv if isinstance(rv, int) else 0)


def _blank_metavar(param: Any) -> Any:
    if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""  # a flag takes no value: its help shows none (Typer would print `<bool>`)
    return param


def _flags_without_metavar(cmd: Any) -> Any:
    """Blank the value column of every flag of `cmd` (and of its subcommands and --help)."""
    if cmd is None or getattr(cmd, "_edgekit_flags_fixed", False):
        return cmd
    cmd._edgekit_flags_fixed = True
    for param in getattr(cmd, "params", []):
        _blank_metavar(param)
    help_option = cmd.get_help_option
    cmd.get_help_option = lambda ctx, _get=help_option: _blank_metavar(_get(ctx))
    if hasattr(cmd, "commands"):  # a sub-group (toolchain, device): the same for its verbs
        get = cmd.get_command
        cmd.get_command = lambda ctx, name, _get=get: _flags_without_metavar(_get(ctx, name))
    return cmd


def _abort_types() -> tuple[type[BaseException], ...]:
    """Typer's Abort and (where Typer still uses it) click's, for a clean "aborted" instead of a traceback."""
    found: list[type[BaseException]] = [typer.Abort]
    abort = getattr(_click_exceptions(), "Abort", None)
    if isinstance(abort, type) and issubclass(abort, BaseException):
        found.append(abort)
    return tuple(found)


def _click_exceptions() -> Any:
    """Click's exception module: vendored by recent Typer (typer._click), else click itself."""
    try:
        from typer._click import exceptions
    except ImportError:  # older Typer depends on click
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


app = typer.Typer(
    name="edgekit",
    cls=EdgekitGroup,
    help="PyTorch → ONNX → INT8 → compiled for a device, with accuracy and latency checks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

# Shared option aliases (declared once, used by every verb).
JsonOpt = Annotated[
    str | None,
    typer.Option("--json", metavar="[FILE.json]",
                 help="Write the result as JSON: to stdout with a bare --json, or to FILE.json."),
]
InputShapeOpt = Annotated[
    list[str] | None,
    typer.Option("--input-shape", "-s", metavar="NAME:D0,D1,...",
                 help="Input name and shape, e.g. images:1,3,640,640 (repeat for several inputs)."),
]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the result.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="Threads for the backend.")]
TrustBundleOpt = Annotated[bool, typer.Option(
    "--trust-bundle", help="Let the bundle load native code (a TVM .so) though it is not signed with your "
                           "local key: only for bundles from someone you trust (docs/security.md).")]


def finite(minimum: float | None = None) -> Callable[[typer.CallbackParam, float | None], float | None]:
    """A Typer option callback refusing NaN, inf (and values below `minimum`) as a one-line usage error, exit 2.

    Why: `--atol nan` makes every comparison fail and `--min-sqnr nan` every budget; neither is a number.
    """

    def check(param: typer.CallbackParam, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and (minimum is None or value >= minimum)):
            bound = "" if minimum is None else f" >= {minimum:g}"
            raise typer.BadParameter(f"{value} is not a finite number{bound}", param=param)
        return value

    return check


def _quiet(kw: dict[str, Any]) -> bool:
    """No progress when stdout carries JSON (`--json -`) or the user asked for quiet."""
    return bool(kw.get("quiet")) or any(kw.get(k) == "-" for k in ("json", "json_dest"))


def command(name: str | None = None, *, progress: bool = True, **kwargs: Any) -> Callable[[F], F]:
    """Register a verb; EdgekitError becomes one red line on stderr and the error's exit code.

    With `progress` (default) the verb's long steps (`edgekit.progress`) are shown on stderr; a verb
    with its own live display (`run`) passes False and renders the events itself.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kw: Any) -> Any:
            from edgekit.cli._progress import cli_progress

            try:
                if not progress:
                    return func(*args, **kw)
                with cli_progress(err_console, quiet=_quiet(kw)):
                    return func(*args, **kw)
            except EdgekitError as exc:
                if STATE["debug"]:
                    err_console.print_exception()
                from rich.markup import escape

                # escape: a path or message holding "[...]" is text, not Rich markup
                err_console.print(f"[bold red]error[/]: {escape(exc.one_line())}", highlight=False, soft_wrap=True)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                err_console.print("[bold red]interrupted[/]: nothing was written")
                raise typer.Exit(130) from None

        app.command(name, **kwargs)(wrapper)
        return func

    return decorate


def emit_json(payload: Any, dest: str | None) -> None:
    """Print JSON to stdout (`-`) or write it atomically to a file."""
    from edgekit.artifact import to_jsonable, write_text_atomic

    text = json.dumps(to_jsonable(payload), indent=2) + "\n"
    if dest in (None, ""):
        return
    if dest == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text_atomic(dest, text)
        err_console.print(f"wrote {dest}", highlight=False)


def wants_stdout_json(dest: str | None) -> bool:
    """When JSON goes to stdout, human output goes to stderr so the JSON stays parseable."""
    return dest == "-"


def out(json_dest: str | None) -> Console:
    return err_console if wants_stdout_json(json_dest) else console


def fmt_num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "∞" if value > 0 else "-∞"
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def provenance_style(provenance: str) -> str:
    """Rich markup for a provenance label: measured plain, emulated/estimated highlighted."""
    colours = {"measured": "green", "emulated": "yellow", "estimated": "magenta", "not-run": "dim"}
    return f"[{colours.get(str(provenance), 'white')}]{provenance}[/]"
