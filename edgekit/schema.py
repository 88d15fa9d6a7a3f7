"""Typed tables read from documents someone else wrote (recipes, stored budgets), each error one line.

The tables are pydantic v2 dataclasses (`@dataclass(frozen=True, config=CONFIG)` over `Table`):
unknown keys are refused (`extra="forbid"`), NaN/inf are not numbers (`allow_inf_nan=False`), and
they stay dataclasses, so `to_jsonable`, the stage cache and positional construction keep working.
A document is validated with a context `{"base": folder}` (see `loading_base`): then the caller turns
the ValidationError into one BadInputError line with `first_error` (`targets[1].latency[0]: ...`).
Built in Python (no context), a bad value is a BadInputError naming the class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, ValidationError, ValidationInfo, ValidatorFunctionWrapHandler, model_validator
from pydantic.dataclasses import dataclass

from edgekit.errors import BadInputError, EdgekitError

CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


def loading_base(info: ValidationInfo) -> Path | None:
    """The document's folder while a document is validated; None for a table built in Python."""
    context = info.context
    base = context.get("base") if isinstance(context, Mapping) else None
    return Path(base) if base is not None else None


def invalid(info: ValidationInfo, owner: type, message: str) -> Exception:
    """The error for a model-level check (run outside `Table`'s wrapper): ValueError while a document is
    validated (pydantic adds the key path), else a BadInputError naming the class."""
    return ValueError(message) if loading_base(info) is not None else BadInputError(message, path=owner.__name__)


def value_error(check: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run a check that raises an EdgekitError as one raising ValueError, so pydantic adds the key path."""
    try:
        return check(*args, **kw)
    except EdgekitError as exc:
        raise ValueError(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None


def key_path(loc: tuple[Any, ...]) -> str:
    """`("targets", 1, "latency", 0)` -> `targets[1].latency[0]`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def first_error(
    exc: ValidationError,
    *,
    rename: Callable[[tuple[Any, ...]], tuple[Any, ...]] = lambda loc: loc,
    allowed_keys: Callable[[tuple[Any, ...]], list[str]] | None = None,
) -> str:
    """The first problem as `key.path: what, got VALUE` (+ how many more); `rename` maps a loc to the document's."""
    errors = exc.errors(include_url=False)
    locs = [tuple(e["loc"]) for e in errors]  # a bad table also fails the list holding it: count the leaves
    errors = [e for e, loc in zip(errors, locs, strict=True)
              if not any(other[:len(loc)] == loc and other != loc for other in locs)] or errors
    first = errors[0]
    loc = rename(tuple(first["loc"]))
    kind, msg = first["type"], first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        allowed = allowed_keys(loc[:-1]) if allowed_keys else []
        text = "unknown key" + (f" (allowed here: {', '.join(allowed)})" if allowed else "")
    elif kind in ("missing", "missing_argument", "missing_keyword_only_argument"):
        text = "missing required key"
    elif kind.startswith(("value_error", "assertion_error")):
        text = msg
    else:
        shown = repr(first.get("input"))
        text = f"{msg}, got {shown if len(shown) <= 60 else shown[:57] + '...'}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{key_path(loc)}: {text}{more}" if loc else f"{text}{more}"


@dataclass(frozen=True, config=CONFIG)
class Table:
    """Base of every schema table: built in Python, a bad value is a BadInputError naming the class."""

    @model_validator(mode="wrap")
    @classmethod
    def _one_error(cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        if loading_base(info) is not None:
            return handler(data)  # validating a document: its loader reports the whole key path
        try:
            return handler(data)
        except ValidationError as exc:
            raise BadInputError(first_error(exc), path=cls.__name__) from None
