"""Pure graph helpers: task specs, batch (mini-DAG) planning, cycle checks, descendants.

Everything here is iterative: a 100,000-task chain neither recurses nor slows to quadratic time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from msgspec import NODEFAULT

from crew_aio.errors import Invalid
from crew_aio.fields import compile_function
from crew_aio.model import GIVEN_FIELDS, Label

__all__ = ["TaskSpec", "descendants", "plan_batch"]


PseudoId = str | int | float  # compared as JavaScript's === compares them (1 == 1.0 != "1")


if TYPE_CHECKING:

    class TaskSpec:
        """What type checkers see of the class generated below: the GIVEN fields (read through
        ``__getattr__``) are the field table's, declared once, in ``crew_aio.model.Task``."""

        parent_ids: tuple[str, ...]
        parents_listed: bool
        child_id: PseudoId | None
        pseudo_parents: tuple[PseudoId, ...] | None

        def __init__(self, name: Label, channel: str, **given: Any) -> None: ...
        def __getattr__(self, name: str) -> Any: ...


_EXTRAS = (  # where a spec sits in its batch (not task fields)
    ("parents_listed", False),  # Crew's parentsComplete of a root: created with a parentIds list
    ("child_id", None),  # its pseudo-id in a TaskChild batch
    ("pseudo_parents", None),  # its parents' pseudo-ids
)


def _spec_class() -> Any:
    """``TaskSpec``: a task to create, already type-checked by the protocol layer: the GIVEN
    fields of the field table as slots (``TaskSpec(name, channel, key=..., ...)``: name and
    channel positional, the rest keywords, each defaulting as the task's), plus where it sits
    in its batch. Generated from the table, as a dataclass would be: 100,000 are built per
    batch, at the cost of hand-written code."""
    env: dict[str, Any] = {}
    params, sets = [], []
    for f in GIVEN_FIELDS:
        if f.default is NODEFAULT:
            params.append(f.attr)
        else:
            env[f"_d_{f.attr}"] = f.default
            params.append(f"{f.attr}=_d_{f.attr}")
        value = f.attr
        if f.default == ():
            value = f"{f.attr} if type({f.attr}) is tuple else tuple({f.attr})"
        sets.append(f"    self.{f.attr} = {value}")
    first_keyword = next(i for i, p in enumerate(params) if "=" in p)
    params.insert(first_keyword, "*")
    for name, default in _EXTRAS:
        params.append(f"{name}={default!r}")
        sets.append(f"    self.{name} = {name}")
    init = compile_function("__init__", [f"def __init__(self, {', '.join(params)}):", *sets], env)
    slots = tuple(f.attr for f in GIVEN_FIELDS) + tuple(name for name, _ in _EXTRAS)

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in slots)
        return f"TaskSpec({shown})"

    namespace = {"__slots__": slots, "__init__": init, "__repr__": __repr__,
                 "__doc__": _spec_class.__doc__, "__module__": __name__}  # fmt: skip
    return type("TaskSpec", (), namespace)


if not TYPE_CHECKING:
    TaskSpec = _spec_class()


def plan_batch(specs: Sequence[TaskSpec]) -> list[tuple[int, ...]]:
    """Resolve the pseudo-ids of a TaskChild list.

    Returns, for each entry, the indexes of the entries it depends on. Raises :class:`Invalid`
    naming the entry for a duplicate ``_child_id``, an unknown ``_parent_ids`` entry, or a cycle.
    """
    by_pseudo: dict[PseudoId, int] = {}
    for i, spec in enumerate(specs):
        if spec.child_id is None:
            continue
        if spec.child_id in by_pseudo:
            raise Invalid(f"duplicate _child_id {spec.child_id!r}", field=f"[{i}]._child_id")
        by_pseudo[spec.child_id] = i
    deps: list[tuple[int, ...]] = []
    for i, spec in enumerate(specs):
        resolved: list[int] = []
        for pseudo in spec.pseudo_parents or ():
            j = by_pseudo.get(pseudo)
            if j is None:
                raise Invalid(f"unknown _parent_ids entry {pseudo!r}", field=f"[{i}]._parent_ids")
            resolved.append(j)
        deps.append(tuple(dict.fromkeys(resolved)))
    _check_acyclic(deps)
    return deps


def _check_acyclic(deps: Sequence[tuple[int, ...]]) -> None:
    """Kahn's algorithm over entry indexes; raises Invalid naming an entry on a cycle."""
    if not any(deps):  # a flat batch (no _parent_ids) has no cycle to find
        return
    indegree = [len(d) for d in deps]
    dependents: list[list[int]] = [[] for _ in deps]
    for i, parents in enumerate(deps):
        for j in parents:
            dependents[j].append(i)
    ready = deque(i for i, n in enumerate(indegree) if n == 0)
    seen = 0
    while ready:
        i = ready.popleft()
        seen += 1
        for k in dependents[i]:
            indegree[k] -= 1
            if indegree[k] == 0:
                ready.append(k)
    if seen != len(deps):
        first = next(i for i, n in enumerate(indegree) if n > 0)
        raise Invalid("the _parent_ids form a cycle", field=f"[{first}]._parent_ids")


def descendants(roots: Iterable[str], children_of: Callable[[str], Iterable[str]]) -> list[str]:
    """``roots`` and every task reachable through children, each once, breadth first."""
    order: list[str] = []
    seen: set[str] = set()
    queue = deque(roots)
    while queue:
        tid = queue.popleft()
        if tid in seen:
            continue
        seen.add(tid)
        order.append(tid)
        queue.extend(children_of(tid))
    return order
