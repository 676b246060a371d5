"""Worker: the evaluate actor and the pipeline it runs (trace in, evaluations out), the DuckDB
sink, the service processes (`service`, `supervisor`), metrics, and the jobs: an embedded run
(`embedded`) and a service-mode ingest (`ingest_job`).

May import: core, queue, ingest, sampling, pii, rubrics, judges, store.
"""
