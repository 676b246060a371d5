"""A test OTLP/HTTP logs receiver: decodes each request's protobuf and keeps its log records.

It stands in for a Collector or a vendor's OTLP endpoint, so a test can assert exactly what the
evaluator sent: event names, attributes, and the trace and span ids the records are parented to.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord


class OtlpLogsCollector:
    """Serves POST /v1/logs on 127.0.0.1 (a free port); answers `status` (200 by default)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.records: list[LogRecord] = []
        self.requests = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportLogsServiceRequest.FromString(body)
                with collector._lock:
                    collector.requests += 1
                    if collector.status == 200:
                        collector.records.extend(record for resource in request.resource_logs
                                                 for scope in resource.scope_logs
                                                 for record in scope.log_records)
                reply = ExportLogsServiceResponse().SerializeToString()
                self.send_response(collector.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                """Quiet."""

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}/v1/logs"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpLogsCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
