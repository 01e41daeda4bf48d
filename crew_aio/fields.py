"""The task field table: each field's roles, and the code derived from them.

A task field is declared once, in :class:`crew_aio.model.Task`, with its type, its default and
its roles (``Annotated[int, GIVEN | EDIT]``). Its wire name (record and API) comes from the
struct's renaming. Everything else that lists task fields is derived here from that one
declaration:

========================  ==============================================================
derived                   from
========================  ==============================================================
the record encoder        every field not RUNTIME; REQUIRED ones always, others when not
                          at their default (generated code: as fast as hand-unrolled)
the API renderer          every field neither RUNTIME nor INTERNAL, in Crew's order then
                          ours; TIME fields as ISO-8601 (generated code)
a create's spec           the GIVEN fields: ``TaskSpec``'s slots, the request body reader,
                          the new task built from a spec (generated code)
the editable fields       EDIT (``PUT /task/:id``)
a pluck's copy            PLUCK
========================  ==============================================================

So a new field is one line in ``Task`` (plus its tests): a protocol body that should take it
declares it too (the wire layer's validation), and a test checks the bodies against this table.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = [
    "EDIT",
    "GIVEN",
    "INTERNAL",
    "NONE",
    "PLUCK",
    "REQUIRED",
    "RUNTIME",
    "TIME",
    "Field",
    "Role",
    "compile_function",
    "table",
]


class Role(enum.Flag):
    NONE = 0
    REQUIRED = enum.auto()  # always in a record (and never its default)
    TIME = enum.auto()  # epoch seconds in records, ISO-8601 in the API
    GIVEN = enum.auto()  # set from a create request (TaskChild): a TaskSpec field
    EDIT = enum.auto()  # PUT /task/:id may change it
    PLUCK = enum.auto()  # a pluck's copy keeps it
    INTERNAL = enum.auto()  # stored, never shown in the API
    RUNTIME = enum.auto()  # rebuilt at load, never stored, never shown


NONE, REQUIRED, TIME, GIVEN = Role.NONE, Role.REQUIRED, Role.TIME, Role.GIVEN
EDIT, PLUCK, INTERNAL, RUNTIME = Role.EDIT, Role.PLUCK, Role.INTERNAL, Role.RUNTIME


@dataclass(frozen=True, slots=True)
class Field:
    attr: str  # the Python attribute
    wire: str  # its name in records and in the API (Crew's spelling)
    roles: Role
    default: Any  # msgspec.NODEFAULT for a required field; a fresh value for a factory's

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def stored(self) -> bool:
        return not self.has(RUNTIME)

    @property
    def shown(self) -> bool:
        return not self.has(RUNTIME) and not self.has(INTERNAL)


def table(struct: type[msgspec.Struct]) -> tuple[Field, ...]:
    """The fields of ``struct`` in declaration order, with the roles of their annotations."""
    hints = typing.get_type_hints(struct, include_extras=True)
    out = []
    for info in msgspec.structs.fields(struct):
        roles = NONE
        for extra in getattr(hints[info.name], "__metadata__", ()):
            if isinstance(extra, Role):
                roles |= extra
        default = info.default
        if info.default_factory is not msgspec.NODEFAULT:
            default = info.default_factory()
        out.append(Field(info.name, info.encode_name, roles, default))
    return tuple(out)


def compile_function(name: str, lines: Sequence[str], env: dict[str, Any]) -> Callable[..., Any]:
    """Build a function from generated source lines (the way dataclasses builds ``__init__``):
    the derived encoders run as fast as if each field were written out by hand."""
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), dict(env), namespace)
    fn: Callable[..., Any] = namespace[name]
    return fn


def differs_from_default(expr: str, default: Any, env: dict[str, Any]) -> str:
    """Python source: true when ``expr`` is not ``default`` as a record leaves it out (a value
    equal to the default but of another JSON type, 1.0 for 1, is kept)."""
    if default is None or default is False or default is True:
        return f"{expr} is not {default!r}"
    if isinstance(default, list | tuple | dict) and not default:
        return f"{expr}"
    if type(default) in (int, float, str):
        return f"{expr} != {default!r} or type({expr}) is not {type(default).__name__}"
    name = f"_default_{len(env)}"
    env[name] = default
    return f"{expr} != {name} or type({expr}) is not {type(default).__name__}"
