"""Humans: label files and annotation batches (`labels`, `label_files`), judge-vs-human agreement
statistics and the corrected failure rate (`agreement`), and rubric promotion checks
(`promotion`).

May import: everything below it (core ... worker, store) and its peers monitoring and
regression; never cli.
"""
