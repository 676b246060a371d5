"""Merging labels before comparing them (`agreement --collapse partial=refused`).

Binary human labels meet a three-label rubric: mapping `partial` onto `refused` on both sides
compares like with like. Labels the mapping does not name stay as they are.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from evaluator.humans.agreement.stats import AgreementError


def parse_collapse(specs: Sequence[str]) -> dict[str, str]:
    """{'partial': 'refused'} from ['partial=refused']; 'a,b=c' maps a and b onto c."""
    mapping: dict[str, str] = {}
    for spec in specs:
        sources, equals, target = spec.partition("=")
        names = [name.strip() for name in sources.split(",")]
        if not equals or "=" in target or not target.strip() or not all(names):
            raise AgreementError(f"--collapse {spec!r}: write FROM=TO (e.g. partial=refused), "
                                 "or FROM1,FROM2=TO")
        for name in names:
            if mapping.get(name, target.strip()) != target.strip():
                raise AgreementError(f"--collapse maps {name!r} twice: onto {mapping[name]!r} "
                                     f"and {target.strip()!r}")
            mapping[name] = target.strip()
    return mapping


def collapse(labels: Sequence[Any], mapping: Mapping[str, str]) -> list[Any]:
    """The labels with every mapped one replaced by its target."""
    return [mapping.get(label, label) if isinstance(label, str) else label for label in labels]


def collapse_order(order: Sequence[Hashable], mapping: Mapping[str, str]) -> list[Hashable]:
    """A label order after merging: each label once, where it (or its first source) stood."""
    return list(dict.fromkeys(collapse(order, mapping)))
