"""Helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from api.runtime import Runtime
from core.errors import TawqiError

if TYPE_CHECKING:  # the composition root is imported by the commands that need it
    from api.wiring import Wiring

F = TypeVar("F", bound=Callable[..., Any])


class LazyRuntime:
    """Builds the Runtime, and the composition root over it, on first use, so
    ``tawqi --help`` needs no database."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._wiring: Wiring | None = None

    def get(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime.from_env()
        return self._runtime

    def wiring(self) -> Wiring:
        if self._wiring is None:
            from api.wiring import Wiring

            self._wiring = Wiring(self.get())
        return self._wiring

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()


def current_wiring() -> Wiring:
    """The composition root of the running ``tawqi`` command (sealer, CA, worker...)."""
    lazy = click.get_current_context().find_object(LazyRuntime)
    if lazy is None:
        raise click.UsageError("run through the tawqi command group")
    return lazy.wiring()


def pass_runtime(func: F) -> F:
    """Give a command the Runtime as its first argument."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        lazy = ctx.find_object(LazyRuntime)
        if lazy is None:
            raise click.UsageError("run through the tawqi command group")
        return ctx.invoke(func, lazy.get(), *args, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper  # type: ignore[return-value]


def fail(exc: TawqiError) -> NoReturn:
    click.echo(f"error: {exc.detail} [{exc.type}]", err=True)
    sys.exit(2 if exc.status < 500 else 1)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))
