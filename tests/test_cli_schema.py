"""Input formats are documented (issue 17.7): `evaluator schema`, the committed schemas under
docs/schemas/, and README's Formats examples, which the schemas and the real readers accept."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.commands.schema import SCHEMA_NAMES
from evaluator.core.errors import InvalidTraceError
from evaluator.core.records import parse_trace
from evaluator.core.settings import PROJECT_ROOT
from evaluator.humans.labels import import_labels
from evaluator.regression.datasets import DatasetItem
from evaluator.regression.schemas import SCHEMAS, json_schema, schema_text
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store

jsonschema = pytest.importorskip("jsonschema")

SCHEMA_DIR = PROJECT_ROOT / "docs" / "schemas"
SUBSECTIONS = {"trace": "### Trace", "dataset-item": "### Dataset item",
               "labels": "### Human labels"}


def formats_examples() -> dict[str, list[tuple[str, str]]]:
    """(fence language, block text) of each Formats subsection of README.md."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Formats\n", 1)[1].split("\n## ", 1)[0]
    found = {}
    for name, heading in SUBSECTIONS.items():
        part = section.split(f"\n{heading}", 1)[1].split("\n### ", 1)[0]
        found[name] = re.findall(r"```(\w+)\n(.*?)```", part, flags=re.S)
    return found


def jsonl_examples(name: str) -> list[dict]:
    return [json.loads(line) for fence, block in formats_examples()[name] if fence == "jsonl"
            for line in block.splitlines() if line.strip()]


def test_the_command_offers_every_schema():
    assert SCHEMA_NAMES == tuple(SCHEMAS)


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_committed_schema_matches_the_models(name):
    committed = (SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(name), (
        f"docs/schemas/{name}.schema.json is stale: run "
        f"`evaluator schema {name} --out docs/schemas/{name}.schema.json`")
    jsonschema.Draft202012Validator.check_schema(json.loads(committed))


def test_schema_command_prints_and_writes(tmp_path):
    result = CliRunner().invoke(cli, ["schema", "dataset-item"], catch_exceptions=False)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json_schema("dataset-item")
    out = tmp_path / "trace.json"
    result = CliRunner().invoke(cli, ["schema", "trace", "--out", str(out)])
    assert result.exit_code == 0 and out.read_text(encoding="utf-8") == schema_text("trace")
    result = CliRunner().invoke(cli, ["schema", "nope"])
    assert result.exit_code == 2 and "'trace', 'dataset-item', 'labels'" in result.output


def test_readme_has_a_minimal_and_a_full_example_of_each_format():
    for name, blocks in formats_examples().items():
        assert len(blocks) >= 2, name


def test_readme_trace_examples_fit_the_schema_and_parse():
    validator = jsonschema.Draft202012Validator(json_schema("trace"))
    examples = jsonl_examples("trace")
    for example in examples:
        validator.validate(example)
        assert parse_trace(example).trace_id == example["trace_id"]
    full = max(examples, key=len)
    assert set(full) == set(json_schema("trace")["properties"]) - {
        "truncated", "input_hash", "pii_masked"}


def test_question_and_answer_keys_are_refused_by_schema_and_parser():
    wrong = {"trace_id": "t", "question": "q?", "answer": "a."}
    assert not jsonschema.Draft202012Validator(json_schema("trace")).is_valid(wrong)
    with pytest.raises(InvalidTraceError, match="question"):
        parse_trace(wrong)


def test_readme_dataset_item_examples_fit_the_schema_and_validate():
    validator = jsonschema.Draft202012Validator(json_schema("dataset-item"))
    examples = jsonl_examples("dataset-item")
    for example in examples:
        validator.validate(example)
        DatasetItem.model_validate(example)
    assert set(max(examples, key=len)) == set(json_schema("dataset-item")["properties"])


def test_readme_label_examples_fit_the_schema_and_import(tmp_path):
    validator = jsonschema.Draft202012Validator(json_schema("labels"))
    rows = jsonl_examples("labels")
    for row in rows:
        validator.validate(row)
    assert not validator.is_valid({"rubric": "refusal", "annotator": "a", "label": "refused"})
    assert not validator.is_valid({"trace_id": "t", "rubric": "refusal", "annotator": "a"})
    registry = RubricRegistry.load(PROJECT_ROOT / "rubrics")
    blocks = formats_examples()["labels"]
    files = [tmp_path / f"labels{n}.{fence}" for n, (fence, _) in enumerate(blocks)]
    with Store(tmp_path / "e.duckdb") as store:
        for path, (_, block) in zip(files, blocks, strict=True):
            path.write_text(block, encoding="utf-8")
            result = import_labels(path, store, registry)
            assert result.rejected == [] and result.ignored_columns == []
            assert result.imported == result.rows > 0
