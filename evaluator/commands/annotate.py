"""`evaluator annotate`: the annotation page over the batches `labels export` recorded."""

from __future__ import annotations

from pathlib import Path

import click

from evaluator.commands.context import current_settings
from evaluator.core.errors import DatasetError


@click.command()
@click.option("--rubric", "rubric_ref", default=None, help="Only batches of this rubric (NAME).")
@click.option("--batch", default=None, help="Open this batch (its id, or a unique start of it).")
@click.option("--annotator", default=None,
              help="Label as NAME [default: each browser says who is labelling].")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback lets other machines reach the page "
                   "(they still need the token).")
@click.option("--show-verdicts", is_flag=True,
              help="Once an item is labelled, show the judge's verdict and reasoning on it "
                   "[default: blind, never shown].")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
def annotate(rubric_ref, batch, annotator, port, host, show_verdicts, db) -> None:
    """Label annotation batches in the browser, one item at a time, with keyboard shortcuts.
    Prints a link with a token (needed to use the page); Ctrl-C stops. Labels go to the store as
    `labels import` writes them, so `evaluator agreement` sees them at once."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.humans.annotate.app import PageConfig, build_app
    from evaluator.humans.annotate.queue import AnnotationQueue, clean_annotator
    from evaluator.humans.annotate.security import new_token
    from evaluator.humans.annotate.server import is_loopback, login_url, serve
    from evaluator.rubrics import RubricRegistry, parse_ref

    settings = current_settings()
    if annotator is not None:
        try:
            annotator = clean_annotator(annotator)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--annotator") from None
    criterion = None if rubric_ref is None else parse_ref(rubric_ref)[0]
    queue = AnnotationQueue(db or settings.db_path, RubricRegistry.load(settings.rubrics_dir),
                            rubric=criterion)
    batches = queue.batches()
    if not batches:
        scope = f" of rubric {criterion}" if criterion else ""
        raise DatasetError(f"no annotation batch{scope} in {queue.db_path}: export one with "
                                   "`evaluator labels export --rubric R --n N`")
    batch_id = None if batch is None else queue.find(batch).batch_id
    token = new_token()
    app = build_app(PageConfig(queue, token, annotator=annotator, batch=batch_id,
                               show_verdicts=show_verdicts))

    def ready(bound_port: int) -> None:
        click.echo(f"Annotation page ({len(batches)} batch{'es' if len(batches) != 1 else ''}): "
                   f"open {login_url(host, bound_port, token)}")
        click.echo("  the token in the link is needed to use the page; Ctrl-C stops")
        if not is_loopback(host):
            click.echo(f"  listening on {host}: other machines can reach the page (not encrypted); "
                       "share the link only with your annotators")

    import asyncio  # lazy: every command's start imports this module

    try:
        asyncio.run(serve(app, host, port, ready))
    except KeyboardInterrupt:
        click.echo("stopped")
