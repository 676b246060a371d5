"""Build the conformance suite's virtualenvs: one per instrumentation package set.

Each `conformance-<name>` extra of pyproject.toml (except conformance-base) becomes
`.venv-conformance/<name>`, holding that set's packages plus conformance-base, installed with
constraints.txt so every package the project also uses has the project's version. Two versions
of one package (openai-v2 2.3b0 and 2.4b0, OpenLLMetry 0.52 and 0.62) cannot share an
environment, hence one each.

The project itself is not installed there: a `.pth` file appends the project root and the main
`.venv`'s site-packages to the venv's path, after its own site-packages. The instrumentation's
packages are found first; the evaluator and the rest of its dependencies come from the main
venv, at the same versions (constraints.txt), so the driver runs the live exporters of this
checkout. A stamp file per venv holds what it was built from (the set's requirements and
constraints.txt's hash): a venv whose stamp matches is up to date and skipped.

    python scripts/conformance_envs.py            # every set
    python scripts/conformance_envs.py logfire-5  # one
"""

from __future__ import annotations

import argparse
import hashlib
import json
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


def _built_from(requirements: list[str]) -> str:
    constraints = hashlib.sha256((ROOT / "constraints.txt").read_bytes()).hexdigest()
    return json.dumps({"requirements": requirements, "constraints_sha256": constraints, "python": sys.version})


def _site_packages(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()


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
    main_site = sysconfig.get_path("purelib")  # this interpreter is the main .venv's
    Path(_site_packages(python), "evaluator_main_venv.pth").write_text(f"{ROOT}\n{main_site}\n")
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
