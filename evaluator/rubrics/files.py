"""Rubric files: front matter, loading, references (NAME@vN) and the registry."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evaluator.core.errors import RubricError, first_problem
from evaluator.core.records import sha256_hex
from evaluator.rubrics.model import PAIRWISE_LABELS, TEMPLATED_KINDS, Rubric
from evaluator.rubrics.render import _compiled, check_template

_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
_REF = re.compile(r"([a-z][a-z0-9_]*)(?:@v?([1-9][0-9]*))?")
_FRONT_MATTER = re.compile(r"---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", re.DOTALL | re.MULTILINE)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
RUBRIC_SUFFIXES = (".jinja", ".yaml")
"""A Jinja rubric, or a code scorer's rubric (no template)."""


Input = Literal["input", "output", "context", "system", "expected"]


class _FrontMatter(BaseModel):
    """A Jinja rubric's front matter (`v<N>.jinja`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    criterion: str = Field(pattern=_NAME_PATTERN)
    version: int = Field(ge=1)
    description: str = Field(min_length=1)
    labels: dict[str, float] = Field(min_length=2)
    pass_threshold: float = Field(ge=0.0, le=1.0)
    required_inputs: list[Input] = Field(min_length=1)
    output_format: Literal["json"] = "json"
    kind: Literal["judge", "pairwise"] = "judge"
    offline: str | None = Field(default=None, pattern=_NAME_PATTERN)
    claims: bool = False

    @field_validator("labels")
    @classmethod
    def _snake_case_labels_scored_0_to_1(cls, labels: dict[str, float]) -> dict[str, float]:
        for label, score in labels.items():
            if not re.match(_NAME_PATTERN, label):
                raise ValueError(f"label {label!r} must be snake_case, e.g. 'mostly_faithful'")
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"label {label!r} scores {score}; scores go from 0 to 1")
        return labels


class _CodeRubricFile(_FrontMatter):
    """A code scorer's rubric (`v<N>.yaml`): no template; `kind` names the scorer, `params`
    are its settings. Labels default to pass/fail."""

    labels: dict[str, float] = Field(default_factory=lambda: {"pass": 1.0, "fail": 0.0}, min_length=2)
    pass_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    required_inputs: list[Input] = Field(default_factory=lambda: list[Input](["output"]), min_length=1)
    kind: str = Field(pattern=_NAME_PATTERN)  # type: ignore[assignment]
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _not_templated(cls, kind: str) -> str:
        if kind in TEMPLATED_KINDS:
            raise ValueError(f"a '{kind}' rubric is a Jinja template: write it as v<N>.jinja")
        return kind


def _front_matter_error(path: Path, error: ValidationError, model: type[_FrontMatter]) -> RubricError:
    key, message, kind, _ = first_problem(error, root="<front matter>")
    if kind == "extra_forbidden":
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return RubricError(
            f"{path}: unknown front matter key '{key}' ({hint}allowed: {', '.join(allowed)})"
        )
    if kind == "missing":
        return RubricError(f"{path}: front matter is missing the required key '{key}'")
    return RubricError(f"{path}: front matter key '{key}': {message}")


def _split_front_matter(path: Path, text: str) -> tuple[Any, str, int]:
    match = _FRONT_MATTER.match(text)
    if match is None:
        fix = "close it with a '---' line" if text.startswith("---") else "start with a '---' line"
        raise RubricError(f"{path}: a rubric file opens with YAML front matter: {fix}")
    try:
        meta = yaml.load(match.group(1), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise RubricError(f"{path}: front matter is not valid YAML: {exc}") from None
    return meta, text[match.end() :], text.count("\n", 0, match.end()) + 1


def load_rubric(path: Path, compile_template: bool = True) -> Rubric:
    """Read and validate one rubric file (a Jinja template `v<N>.jinja`, or a code scorer's
    `v<N>.yaml`); a template is compiled now, so errors show early. Without
    `compile_template`, it is only parsed and its layout checked (render.check_template)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise RubricError(f"cannot read rubric file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RubricError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    model: type[_FrontMatter] = _FrontMatter
    if path.suffix == ".yaml":
        model, body, body_line = _CodeRubricFile, "", 1
        try:
            meta = yaml.load(text, Loader=_YAML_LOADER)
        except yaml.YAMLError as exc:
            raise RubricError(f"{path}: not valid YAML: {exc}") from None
    else:
        meta, body, body_line = _split_front_matter(path, text)
    if not isinstance(meta, dict):
        raise RubricError(f"{path}: front matter must be a mapping (criterion: ..., version: ...)")
    try:
        front = model.model_validate(meta)
    except ValidationError as exc:
        raise _front_matter_error(path, exc, model) from None
    if front.kind == "pairwise" and set(front.labels) != set(PAIRWISE_LABELS):
        raise RubricError(f"{path}: a pairwise rubric's labels are {', '.join(PAIRWISE_LABELS)} "
                          "(output A better, no difference, output B better), with their scores")
    passing = [score >= front.pass_threshold for score in front.labels.values()]
    if all(passing) or not any(passing):
        raise RubricError(
            f"{path}: front matter key 'pass_threshold': {front.pass_threshold} must separate "
            "the label scores (at least one label passing and one failing)"
        )
    if path.name != f"v{front.version}{path.suffix}":
        raise RubricError(
            f"{path}: front matter key 'version' is {front.version}: name the file "
            f"v{front.version}{path.suffix}"
        )
    rubric = Rubric(
        criterion=front.criterion,
        version=front.version,
        description=front.description.strip(),
        labels=dict(front.labels),
        pass_threshold=front.pass_threshold,
        template_source=body,
        content_hash=sha256_hex(raw),
        required_inputs=tuple(front.required_inputs),
        output_format=front.output_format,
        kind=front.kind,
        params=dict(getattr(front, "params", {})),
        offline=front.offline,
        claims=front.claims,
        path=path,
        body_line=body_line,
    )
    if rubric.templated and compile_template:
        _compiled(rubric)
    elif rubric.templated:
        check_template(rubric)
    return rubric


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'faithfulness' -> ('faithfulness', None); 'faithfulness@v2' or '@2' -> (..., 2)."""
    match = _REF.fullmatch(ref.strip()) if isinstance(ref, str) else None
    if match is None:
        raise RubricError(
            f"bad rubric reference {ref!r}: use NAME, NAME@vN or NAME@N with a lowercase name "
            "and a version from 1, e.g. 'faithfulness' or 'faithfulness@v2'"
        )
    return match.group(1), int(match.group(2)) if match.group(2) else None


class RubricRegistry:
    """Every rubric version found under one directory, by criterion and version."""

    def __init__(self, rubrics: Iterable[Rubric], directory: Path | None = None):
        self.directory = directory
        self._versions: dict[str, dict[int, Rubric]] = {}
        for rubric in rubrics:
            versions = self._versions.setdefault(rubric.criterion, {})
            if rubric.version in versions:
                raise RubricError(f"rubric {rubric.ref} is defined twice: {rubric.path}")
            versions[rubric.version] = rubric

    @classmethod
    def load(cls, directory: Path, compile_all: bool = True) -> RubricRegistry:
        """Load `<directory>/<criterion>/v<N>.jinja|yaml` (compiled templates are cached by hash).
        Without `compile_all`, every template is parsed and checked (syntax, layout) and compiled
        at first use or by render.compile_templates: a job that uses 5 of 9 versions compiles
        5 (a compile is ~90 % of a version's load)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise RubricError(
                f"rubrics directory {directory} not found; create it or set EVALUATOR_RUBRICS_DIR"
            )
        rubrics = [load_rubric(path, compile_all) for path in sorted(directory.glob("*/*"))
                   if path.suffix in RUBRIC_SUFFIXES]
        for rubric in rubrics:
            if rubric.path and rubric.criterion != rubric.path.parent.name:
                raise RubricError(
                    f"{rubric.path}: criterion '{rubric.criterion}' does not match its "
                    f"directory; move the file to {directory / rubric.criterion}/"
                )
        return cls(rubrics, directory)

    def get(self, ref: str) -> Rubric:
        """The rubric version a ref names; no version means the latest."""
        criterion, version = parse_ref(ref)
        versions = self._versions.get(criterion)
        if not versions:
            available = "; ".join(
                f"{name} ({', '.join(f'v{n}' for n in sorted(found))})"
                for name, found in sorted(self._versions.items())
            )
            raise RubricError(
                f"unknown rubric '{criterion}'; available: {available or 'none'} "
                f"(in {self.directory})"
            )
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            known = ", ".join(f"v{number}" for number in sorted(versions))
            raise RubricError(f"rubric '{criterion}' has no version {version}; available: {known}")
        return versions[version]

    def latest(self) -> list[Rubric]:
        """The latest version of each criterion, sorted by criterion: the rubrics a trace gets by
        default. Pairwise rubrics are left out: they compare two runs (`gate --pairwise`)."""
        found = [versions[max(versions)] for _, versions in sorted(self._versions.items())]
        return [rubric for rubric in found if rubric.kind != "pairwise"]

    def criteria(self) -> list[str]:
        """The criteria traces are judged on (what a sampling rate can name): pairwise ones
        compare runs, and are never sampled."""
        return [rubric.criterion for rubric in self.latest()]

    def all(self) -> list[Rubric]:
        return [found[n] for _, found in sorted(self._versions.items()) for n in sorted(found)]
