"""`evaluator agreement` (judge vs humans, or two columns of a file), `evaluator rubrics check`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from evaluator.commands.context import current_settings

if TYPE_CHECKING:
    from evaluator.humans.agreement.results import (
        AlphaEstimate,
        ConfusionCounts,
        CorrectedRate,
        Estimate,
        FileAgreement,
        GroupAgreement,
        KappaEstimate,
        MeanKappa,
    )

    Statistic = Estimate | AlphaEstimate | MeanKappa | KappaEstimate

DEFAULT_N_BOOT = 1000


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _number(estimate: Statistic | None, percent: bool = False, interval: bool = True) -> str:
    """'0.81 [0.74, 0.87]' (or percentages); '-' for a statistic that is undefined."""
    if estimate is None or estimate.value is None:
        return "-"
    show = (lambda x: f"{100 * x:.1f}%") if percent else (lambda x: f"{x:.2f}")
    ci = estimate.ci if interval else None
    if ci is None or ci.low is None or ci.high is None:
        return show(estimate.value)
    return f"{show(estimate.value)} [{show(ci.low)}, {show(ci.high)}]"


def _point(estimate: Statistic | None, percent: bool = False) -> str:
    if estimate is None or estimate.value is None:
        return "-"
    return f"{100 * estimate.value:.1f}%" if percent else f"{estimate.value:.2f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _corrected(corrected: CorrectedRate) -> str:
    """The corrected failure rate with its interval, as percentages."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.humans.agreement.results import Estimate

    return _number(Estimate(value=corrected.corrected_rate, ci=corrected.ci, reason=None), True)


def _summary_table(groups: list[GroupAgreement]):
    """One row per rubric version x judge; intervals for the headline and the corrected rate
    only (--json has them all)."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from rich.table import Table

    from evaluator.humans.agreement.results import InterAnnotatorReport

    table = Table(title="Judge vs human labels", title_justify="left", show_lines=True,
                  caption="kappa is quadratic-weighted for rubrics with more than two labels; "
                          "humans' alpha: Krippendorff's alpha among the annotators",
                  caption_justify="left")
    for name in ("rubric", "judge"):
        table.add_column(name, no_wrap=True)
    for name in ("n", "kappa [95% CI]", "alpha", "accuracy", "macro F1", "MCC",
                 "humans' alpha", "fail raw", "weighted", "corrected [95% CI]"):
        table.add_column(name, justify="right", no_wrap=True)
    for group in groups:
        report, rates = group.agreement, group.failure_rate
        inter = group.inter_annotator
        statistics = ["-"] * 5 if report is None else [
            _number(report.headline_estimate), _point(report.alpha),
            _point(report.accuracy, percent=True), _point(report.macro_f1), _point(report.mcc)]
        table.add_row(
            group.ref, group.judge, str(group.n), *statistics,
            _point(inter.alpha if isinstance(inter, InterAnnotatorReport) else None),
            _rate(rates.raw_rate), _rate(rates.weighted_rate),
            "-" if rates.corrected is None else _corrected(rates.corrected),
        )
    return table


def _confusion_table(matrix: ConfusionCounts, corner: str = "human \\ judge"):
    # lazy: `evaluator --help` imports every command module: keep it fast
    from rich.table import Table

    table = Table()
    table.add_column(corner)
    for label in matrix.labels:
        table.add_column(str(label), justify="right")
    for label, row in zip(matrix.labels, matrix.counts, strict=True):
        table.add_row(str(label), *map(str, row))
    return table


def _group_details(console, group: GroupAgreement) -> None:
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.humans.agreement.results import InterAnnotatorReport

    name = f"{group.ref} x {group.judge}"
    report = group.agreement
    if report is None:
        console.print(f"[bold]{name}[/]: {group.reason}")
        return
    console.print(f"[bold]{name}[/]: {report.verdict}")
    left_out = [f"{count} {what}" for count, what in (
        (group.ties_left_out, "items where the annotators tied"),
        (group.off_menu_left_out, "labels not on this version's menu")) if count]
    console.print(f"  {group.n} items: the judge's label vs the annotators' majority, from "
                  f"{group.human_labels} human labels"
                  + (f"; left out: {', '.join(left_out)}" if left_out else ""))
    inter = group.inter_annotator
    if isinstance(inter, InterAnnotatorReport):
        console.print(f"  annotators: {inter.n_annotators} on {inter.n_pairable_units} "
                      f"shared items, Krippendorff's alpha {_number(inter.alpha)}, mean "
                      f"pairwise kappa {_number(inter.mean_pairwise_kappa)}")
    else:
        console.print(f"  annotators: {inter.reason}")
    rates = group.failure_rate
    corrected = rates.corrected
    line = (f"  failure rate: raw {_rate(rates.raw_rate)}, weighted by sample_weight "
            f"{_rate(rates.weighted_rate)} ({rates.n_failed} of {rates.n_production})")
    if corrected:
        line += (f"; corrected for the judge (Rogan-Gladen, sensitivity "
                 f"{corrected.sensitivity:.2f}, specificity {corrected.specificity:.2f}, "
                 f"labels weighted by how {corrected.n_strata} annotation strata were "
                 "drawn): " + _corrected(corrected))
    else:
        line += f"; no correction: {rates.reason}"
    console.print(line)
    console.print(_confusion_table(report.confusion_matrix))


def _print_collapsed(console, mapping: dict[str, str]) -> None:
    if mapping:
        console.print("labels merged first: " + ", ".join(f"{a} -> {b}" for a, b in mapping.items()))


def _print_file_report(data: FileAgreement) -> None:
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.core.tables import console as make_console

    console = make_console()
    report = data.agreement
    console.print(f"{data.file}: {report.n} rows compared ({data.roles}); "
                  f"{data.rows_missing_either} rows missing a value, "
                  f"{len(data.unreadable_rows)} unreadable")
    console.print(report.verdict)
    _print_collapsed(console, data.collapse)
    console.print(f"{report.headline} {_number(report.headline_estimate)}, "
                  f"alpha {_number(report.alpha)}, "
                  f"accuracy {_number(report.accuracy, True)}, "
                  f"macro F1 {_number(report.macro_f1)}, MCC {_number(report.mcc)}")
    console.print(_confusion_table(report.confusion_matrix, f"{data.b} \\ {data.a}"))


def _collapse_option(ctx, param, specs: tuple[str, ...]) -> dict[str, str]:
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.humans.agreement.collapse import parse_collapse
    from evaluator.humans.agreement.stats import AgreementError

    try:
        return parse_collapse(specs)
    except AgreementError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command()
@click.option("--rubric", "rubric_ref", default=None, help="Only this rubric (NAME or NAME@vN).")
@click.option("--judge", default=None, help="Only this judge.")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--file", "file", type=click.Path(path_type=Path), default=None,
              help="Compare two columns of this CSV/JSONL file instead of the store.")
@click.option("--a", "column_a", default=None, help="With --file: the first column (judge role).")
@click.option("--b", "column_b", default=None, help="With --file: the second column (reference).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default=None,
              help="With --file: the format [default: from the extension].")
@click.option("--labels-order", default=None,
              help="With --file: comma-separated labels, best to worst (ordinal statistics).")
@click.option("--collapse", "collapse_specs", multiple=True, metavar="FROM=TO",
              callback=_collapse_option,
              help="Merge label FROM into TO on both sides first (e.g. partial=refused, to "
                   "compare binary labels with a three-label rubric); repeatable.")
@click.option("--n-boot", type=click.IntRange(min=0), default=DEFAULT_N_BOOT, show_default=True,
              help="Bootstrap resamples for the intervals (0 = none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def agreement(rubric_ref, judge, db, file, column_a, column_b, fmt, labels_order, collapse_specs,
              n_boot, seed, as_json) -> None:
    """How well the judge agrees with human labels, per rubric version and judge: kappa with a
    CI, alpha, accuracy, F1, MCC, the confusion matrix, inter-annotator agreement, and the
    failure rate corrected for the judge's errors. With --file: any two columns of a file."""
    if file is not None:
        if rubric_ref or judge or db:
            raise click.UsageError("--file compares two columns of a file: drop --rubric, "
                                   "--judge and --db")
        if not column_a or not column_b:
            raise click.UsageError("--file needs --a COLUMN and --b COLUMN")
        # lazy: `evaluator --help` imports every command module: keep it fast
        from evaluator.humans.agreement.from_file import file_agreement

        order = [label.strip() for label in labels_order.split(",")] if labels_order else None
        compared = file_agreement(file, column_a, column_b, fmt=fmt, labels_order=order,
                                  n_boot=n_boot, seed=seed, collapse_labels=collapse_specs)
        if as_json:
            _echo_json(compared.to_dict())
        else:
            _print_file_report(compared)
        return
    if column_a or column_b or labels_order or fmt:
        raise click.UsageError("--a, --b, --format and --labels-order go with --file")
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.humans.agreement.from_store import store_agreement
    from evaluator.rubrics import RubricRegistry
    from evaluator.store import Store

    settings = current_settings()
    # agreement reads the rubrics' labels and scores, never renders a template: not compiled
    registry = RubricRegistry.load(settings.rubrics_dir, compile_all=False)
    with Store(db or settings.db_path, read_only=True, lake=settings.lake_dir) as store:
        data = store_agreement(store, registry, rubric_ref, judge, n_boot=n_boot, seed=seed,
                               collapse_labels=collapse_specs)
    if as_json:
        _echo_json(data.to_dict())
        return
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.core.tables import console as make_console

    console = make_console()
    console.print(_summary_table(data.groups))
    _print_collapsed(console, data.collapse)
    for group in data.groups:
        _group_details(console, group)
    if data.rubric_versions_without_file:
        console.print("left out, no rubric file: " + ", ".join(data.rubric_versions_without_file))
    console.print("[dim]Rates: " + (data.groups[0].failure_rate.basis if data.groups else "")
                  + "[/]")


@click.command("check")
@click.argument("ref")
@click.option("--golden", type=click.Path(path_type=Path), required=True,
              help="Human-labelled dataset (JSONL dataset items with expected labels).")
@click.option("--against", default=None,
              help="Version to compare with [default: the latest published other than REF].")
@click.option("--judge", default=None, help="Judge config name [default: EVALUATOR_JUDGE].")
@click.option("--max-kappa-drop", type=float, default=0.05, show_default=True,
              help="Largest allowed drop of kappa against the humans.")
@click.option("--max-flip-rate", type=click.FloatRange(0, 1), default=0.10, show_default=True,
              help="Largest allowed share of items whose label changes.")
@click.option("--min-items", type=click.IntRange(min=1), default=20, show_default=True,
              help="Fewer comparable items than this: no decision (exit 2).")
@click.option("--n-boot", type=click.IntRange(min=0), default=DEFAULT_N_BOOT, show_default=True,
              help="Bootstrap resamples for the kappa intervals.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rubrics_check(ctx, ref, golden, against, judge, max_kappa_drop, max_flip_rate, min_items,
                  n_boot, as_json) -> None:
    """May REF (NAME@vN) replace the current version? Replays the golden items with both and
    exits 0 (pass), 1 (kappa drops or labels flip past the limits) or 2 (cannot decide)."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.judges.factory import load_judge
    from evaluator.judges.runtime import JudgeRuntime
    from evaluator.regression.promotion import check_promotion, current_version
    from evaluator.rubrics import RubricRegistry

    settings = current_settings()
    registry = RubricRegistry.load(settings.rubrics_dir)
    candidate = registry.get(ref)
    current = registry.get(against) if against else current_version(registry, candidate)
    judge_client = load_judge(judge or settings.judge, settings.judges_dir, JudgeRuntime.from_settings(settings))
    warnings = []
    if not getattr(judge_client, "reads_rubric_text", True):
        # lazy: `evaluator --help` imports every command module: keep it fast
        from evaluator.judges.offline import RUBRIC_TEXT_NOTE

        warnings.append(RUBRIC_TEXT_NOTE)
    result = check_promotion(candidate, current, golden, judge_client,
                             max_kappa_drop=max_kappa_drop, max_flip_rate=max_flip_rate,
                             min_items=min_items, n_boot=n_boot,
                             max_text_chars=settings.max_text_chars)
    if as_json:
        _echo_json({**result.to_dict(), "warnings": warnings})
    else:
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        left_out = ", ".join(f"{count} {why.replace('_', ' ')}"
                             for why, count in result.left_out.items() if count)
        click.echo(f"{result.candidate} (candidate) vs {result.current} (current), judge "
                   f"{result.judge}: {result.compared} of {result.items} golden items compared"
                   + (f" (left out: {left_out})" if left_out else ""))
        if result.candidate_kappa:
            drop = "-" if result.kappa_drop is None else f"{result.kappa_drop:+.3f}"
            click.echo(f"  {result.statistic} vs humans: candidate "
                       f"{_number(result.candidate_kappa)}, "
                       f"current {_number(result.current_kappa)}; "
                       f"drop {drop} (allowed {max_kappa_drop:g})")
            click.echo(f"  label flips: {result.flip_rate:.1%} (allowed {max_flip_rate:.1%})"
                       + (f", e.g. {', '.join(result.flipped_items[:5])}" if result.flipped_items
                          else ""))
        verdict = {"pass": "PASS", "fail": "FAIL"}.get(result.decision, "NO DECISION")
        click.echo(f"{verdict}" + (": " + "; ".join(result.reasons) if result.reasons else ""))
    ctx.exit(result.exit_code)
