"""One small registry per component kind: the registered name is the YAML name."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One user-settable parameter of a component, read from its constructor signature."""

    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty when required

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    description: str


class Registry:
    """Components of one kind (``loss``, ``encoder``, ...) by name.

    The factory's signature is the component's schema: its keyword parameters are what a
    YAML block may set, its defaults are the defaults. Parameters listed in ``injected`` are
    supplied by the runner (an encoder's input size, an optimizer's parameters), never by YAML.
    """

    def __init__(self, kind: str, injected: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.injected = injected
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, description: str | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = description or (inspect.getdoc(factory) or "").split("\n", 1)[0].replace("``", "")
            # The constructor checks its own hyperparameters against its signature's bounds, so
            # a component built from Python fails as clearly as one built from YAML.
            if inspect.isclass(factory):
                factory.__init__ = checked(factory.__init__)  # type: ignore[misc]
            else:
                factory = checked(factory)
            self._entries[name] = Entry(name, factory, doc)
            return factory

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, where: str = "name") -> Entry:
        """The entry for ``name``, or a ConfigError listing the choices (and a close match)."""
        if name in self._entries:
            return self._entries[name]
        lowered = {n.lower(): n for n in self.names()}  # InfoNCE finds infonce
        close = [lowered[c] for c in difflib.get_close_matches(str(name).lower(), lowered, n=1)]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{where}: {name!r} is not a {self.kind}{hint}; choose from {', '.join(self.names())}"
        )

    def params(self, name: str) -> list[Param]:
        """The YAML-settable parameters of ``name``, in signature order."""
        target = self._entries[name].factory
        sig = inspect.signature(target.__init__ if inspect.isclass(target) else target)
        hints = _type_hints(target)
        out = []
        for p in sig.parameters.values():
            if p.name in ("self", *self.injected) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out.append(Param(p.name, hints.get(p.name, Any), p.default))
        return out

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        return self.get(name).factory(*args, **kwargs)


def checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` raising ValueError("<parameter>: must be > 0, got 0") when an argument breaks
    a bound (``Gt``, ``Ge``, ``Lt``, ``Le``) or a ``Literal`` of its annotation, elements of
    lists and tuples included. Types themselves are left to the config layer."""
    import functools

    sig = inspect.signature(fn)
    hints = functools.cache(lambda: _type_hints(fn))  # on first use: every name exists by then

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for param, value in sig.bind(*args, **kwargs).arguments.items():
            problem = _problem(hints().get(param, Any), value)
            if problem:
                raise ValueError(f"{param}: {problem}, got {value!r}")
        return fn(*args, **kwargs)

    return wrapper


_BOUNDS = (("gt", ">", float.__gt__), ("ge", ">=", float.__ge__))
_BOUNDS += (("lt", "<", float.__lt__), ("le", "<=", float.__le__))


def _problem(annotation: Any, value: Any) -> str | None:
    """What is wrong with ``value`` against the bounds and choices of ``annotation``, or None."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        for mark in args[1:]:
            for attr, op, holds in _BOUNDS:
                bound = getattr(mark, attr, None)
                if number and bound is not None and not holds(float(value), float(bound)):
                    return f"must be {op} {bound}"
        return _problem(args[0], value)
    if origin is typing.Literal and value not in args:
        return f"must be one of {', '.join(map(str, args))}"
    if origin in (typing.Union, types.UnionType) and value is not None:
        found = [_problem(a, value) for a in args if a is not type(None)]
        return None if None in found else found[0]
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and args:
        each = args if origin is tuple and Ellipsis not in args else [args[0]] * len(value)
        pairs = zip(each, value, strict=False)  # a tuple of the wrong length: left to pydantic
        problem = next((p for a, v in pairs if (p := _problem(a, v))), None)
        return problem and f"every entry {problem}"
    return None


def _type_hints(target: Callable[..., Any]) -> dict[str, Any]:
    import typing

    fn = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to no types
        return {}


# Constrained types for component signatures: the config layer enforces them and names the
# YAML path in its message (``loss.temperature: input should be greater than 0``).
from typing import Annotated  # noqa: E402

from annotated_types import Ge, Gt  # noqa: E402

PositiveInt = Annotated[int, Gt(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]


def type_text(annotation: Any) -> str:
    """A parameter's type, short: ``float > 0``, ``relu | gelu``, ``list[int]``."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *marks = typing.get_args(annotation)
        bounds = [
            f"{op} {getattr(m, attr)}"
            for m in marks
            for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
            if hasattr(m, attr)
        ]
        return " ".join([type_text(base), *bounds])
    if origin is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):  # Optional[X], X | None, X | Y
        return " | ".join(
            "null" if a is type(None) else type_text(a) for a in typing.get_args(annotation)
        )
    if origin in (list, tuple):
        args = ", ".join(type_text(a) for a in typing.get_args(annotation) if a is not Ellipsis)
        return f"{origin.__name__}[{args}]"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))
