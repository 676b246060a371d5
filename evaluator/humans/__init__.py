"""Humans: label files and annotation batches (`labels`, `label_files`), the page people label
batches in (`annotate`), judge-vs-human agreement statistics and the corrected failure rate
(`agreement`).

May import: everything below it (core ... worker, store); not its peers regression and
monitoring, which import it, nor cli.
"""
