"""Queue: what producers (ingest, the OTel exporter) and consumers (workers, the sink) share.
The broker set-up (`broker`), the work and result message formats (`messages`), sending work
(`producer`), back-pressure on a full queue (`backpressure`), the results channel (`channel`),
the worker heartbeat and dead-worker sweep (`heartbeat`) and the Redis persistence check
(`persistence`).

May import: core.
"""
