"""The lock of published rubric hashes: a published version never changes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from evaluator.core.errors import RubricLockError
from evaluator.rubrics.files import RubricRegistry


def _read_lock(lock_path: Path) -> dict[str, str]:
    if not lock_path.exists():
        return {}
    try:
        data = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RubricLockError(f"{lock_path}: unreadable ({exc}); restore it from git") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise RubricLockError(f"{lock_path}: expected {{'name@vN': 'sha256'}}; restore it from git")
    return data


def verify_lock(registry: RubricRegistry, lock_path: Path) -> None:
    """Fail if a published version changed or vanished, or a version was never recorded."""
    lock_path = Path(lock_path)
    lock = _read_lock(lock_path)
    current = {rubric.ref: rubric for rubric in registry.all()}
    problems = [
        f"{ref} is missing from the lock: record it with `evaluator rubrics lock`"
        if ref not in lock
        else f"{ref} ({rubric.path}) changed after it was published: revert it and publish "
        "a new version file instead"
        for ref, rubric in current.items()
        if lock.get(ref) != rubric.content_hash
    ]
    problems += [
        f"{ref} is in the lock but its file is gone: restore it (published versions stay)"
        for ref in sorted(set(lock) - set(current))
    ]
    if problems:
        raise RubricLockError(f"{lock_path}: rubric lock check failed:\n- " + "\n- ".join(problems))


def update_lock(registry: RubricRegistry, lock_path: Path) -> list[str]:
    """Record new versions in the lock and return their refs; never change an existing entry."""
    lock_path = Path(lock_path)
    lock = _read_lock(lock_path)
    rubrics = registry.all()
    changed = [r.ref for r in rubrics if r.ref in lock and lock[r.ref] != r.content_hash]
    if changed:
        raise RubricLockError(
            f"refusing to update {lock_path}: published version(s) {', '.join(changed)} "
            "changed; revert them and publish new version files instead"
        )
    added = {r.ref: r.content_hash for r in rubrics if r.ref not in lock}
    if added:
        temporary = lock_path.with_name(lock_path.name + ".tmp")
        text = json.dumps({**lock, **added}, indent=2, sort_keys=True) + "\n"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, lock_path)
    return list(added)


# --- Rendering ------------------------------------------------------------------------------


