"""Build the conformance suite's virtualenvs: one per instrumentation package set.

Each `conformance-<name>` extra of pyproject.toml (except conformance-base) becomes
`.venv-conformance/<name>`, holding that set's packages plus conformance-base, installed with
constraints.txt so every package the project also uses has the project's version. Two versions
of one package (openai-v2 2.3b0 and 2.4b0, OpenLLMetry 0.52 and 0.62) cannot share an
environment, hence one each.

The project itself is not installed there, and nothing runs that venv's python: the driver
(tests/conformance/driver.py) runs with the main `.venv`'s, imports openai, the SDK and the
evaluator once and forks a child per set, which puts the set's site-packages first on its path
(`use_env`). That is sound because every package both environments hold has the same version
(constraints.txt; `use_env` checks it). A stamp file per venv holds what it was built from (the
set's requirements and constraints.txt's hash): a venv whose stamp matches is up to date and
skipped.

    python scripts/conformance_envs.py            # every set
    python scripts/conformance_envs.py logfire-5  # one
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import json
import site
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVS = ROOT / ".venv-conformance"
PREFIX = "conformance-"
BASE = "conformance-base"
STAMP = ".installed"


def package_sets() -> dict[str, list[str]]:
    """Set name -> its requirements (conformance-base included), from pyproject.toml."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    base = extras[BASE]
    return {name.removeprefix(PREFIX): base + requirements for name, requirements in extras.items()
            if name.startswith(PREFIX) and name != BASE}


def env_python(name: str) -> Path:
    return ENVS / name / "bin" / "python"


def is_built(name: str) -> bool:
    return (ENVS / name / STAMP).exists()


def site_packages(name: str) -> Path:
    """The set's site-packages (its venv was made by this python: same layout)."""
    env = ENVS / name
    return Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))


def use_env(name: str) -> None:
    """Put the set's packages first on this process's path. Raises RuntimeError when a package
    already imported here is installed at another version there (the set would run with this
    one): rebuild with `make conformance-envs`."""
    where = site_packages(name)
    imported = {module.partition(".")[0] for module in list(sys.modules)}
    differing = sorted(
        f"{dist.metadata['Name']} {dist.version} (here {here})"
        for dist in importlib.metadata.distributions(path=[str(where)])
        if _top_level(dist) & imported
        and (here := _installed_version(dist.metadata["Name"])) not in (None, dist.version))
    if differing:
        raise RuntimeError(f"conformance env {name} differs from the main venv in {', '.join(differing)}: "
                           "run `make conformance-envs`")
    sys.path.insert(0, str(where))
    site.addsitedir(str(where))  # its .pth files (the path entry itself is already first)
    importlib.invalidate_caches()


def _top_level(dist: importlib.metadata.Distribution) -> set[str]:
    """The top-level modules a distribution installs."""
    return {file.parts[0].removesuffix(".py") for file in dist.files or ()
            if file.suffix == ".py" and ".dist-info" not in file.parts[0]}


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _built_from(requirements: list[str]) -> str:
    constraints = hashlib.sha256((ROOT / "constraints.txt").read_bytes()).hexdigest()
    return json.dumps({"requirements": requirements, "constraints_sha256": constraints, "python": sys.version})


def build(name: str, requirements: list[str]) -> None:
    env = ENVS / name
    stamp = env / STAMP
    built_from = _built_from(requirements)
    if stamp.exists() and stamp.read_text() == built_from:
        return
    print(f"conformance env {name}: {' '.join(requirements)}", flush=True)
    venv.create(env, with_pip=True, clear=True)
    python = env_python(name)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-c", str(ROOT / "constraints.txt"), *requirements], check=True)
    stamp.write_text(built_from)


def main(argv: list[str] | None = None) -> int:
    sets = package_sets()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"package sets (default: all): {', '.join(sorted(sets))}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(sets))
    if unknown:
        parser.error(f"unknown package set(s) {', '.join(unknown)}; choose from {', '.join(sorted(sets))}")
    if sys.prefix == sys.base_prefix:
        parser.error("run this with the main .venv's python (make conformance-envs)")
    for name in args.names or sorted(sets):
        build(name, sets[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
