"""Pure graph helpers: task specs, batch (mini-DAG) planning, cycle checks, descendants.

Everything here is iterative: a 100,000-task chain neither recurses nor slows to quadratic time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from crew_aio.errors import Invalid
from crew_aio.model import GIVEN_FIELDS, Label, Task, prototype

__all__ = ["TaskSpec", "descendants", "plan_batch"]


PseudoId = str | int | float  # compared as JavaScript's === compares them (1 == 1.0 != "1")


class TaskSpec:
    """A task to create, already type-checked by the protocol layer: a prototype Task holding
    its given fields (``crew_aio.model.prototype``) and where it sits in its batch.

    ``TaskSpec(name, channel, **given)`` takes the given fields by attribute name;
    :meth:`of` takes a prototype built already (the service reads one from a body)."""

    __slots__ = ("child_id", "parents_listed", "pseudo_parents", "task")

    def __init__(
        self,
        name: Label,
        channel: str,
        *,
        parents_listed: bool = False,
        child_id: PseudoId | None = None,
        pseudo_parents: tuple[PseudoId, ...] | None = None,
        **given: Any,
    ) -> None:
        self.task = prototype(name=name, channel=channel, **given)
        # Crew's ``parentsComplete`` of a root: true when it was created with a parentIds list
        self.parents_listed = parents_listed
        self.child_id = child_id
        self.pseudo_parents = pseudo_parents

    @classmethod
    def of(
        cls,
        task: Task,
        *,
        parents_listed: bool = False,
        child_id: PseudoId | None = None,
        pseudo_parents: tuple[PseudoId, ...] | None = None,
    ) -> TaskSpec:
        spec = cls.__new__(cls)
        spec.task = task
        spec.parents_listed = parents_listed
        spec.child_id = child_id
        spec.pseudo_parents = pseudo_parents
        return spec

    @property
    def parent_ids(self) -> tuple[str, ...]:
        return self.task.parent_ids

    def __getattr__(self, name: str) -> Any:
        """The prototype's given fields read as the spec's own (``spec.name``)."""
        if name in _GIVEN:
            return getattr(self.task, name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        given = ", ".join(f"{a}={getattr(self.task, a)!r}" for a in sorted(_SHOWN))
        return f"TaskSpec({given}, child_id={self.child_id!r}, pseudo={self.pseudo_parents!r})"


_SHOWN = ("name", "channel", "parent_ids", "key", "workgroup")
_GIVEN = frozenset(f.attr for f in GIVEN_FIELDS)


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
