"""The floor for any Python ext_authz: a grpc.aio server (uvloop) answering a prebuilt OK.

    python bench/noop_authz.py 127.0.0.1:PORT

Used by bench_dataplane.py as the `grpc-noop` scenario, so Link's own cost is visible
next to the cost of one Python gRPC hop on the same machine.
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import status_pb2

OK = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=0), ok_response=external_auth_pb2.OkHttpResponse())


class _Authz(external_auth_pb2_grpc.AuthorizationServicer):
    async def Check(self, request: Any, context: Any) -> Any:
        return OK


class _AccessLog(als_pb2_grpc.AccessLogServiceServicer):
    async def StreamAccessLogs(self, request_iterator: Any, context: Any) -> Any:
        async for _ in request_iterator:
            pass
        return als_pb2.StreamAccessLogsResponse()


async def main(address: str) -> None:
    server = grpc.aio.server(options=[("grpc.http2.min_ping_interval_without_data_ms", 5000),
                                      ("grpc.keepalive_permit_without_calls", 1)])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(_Authz(), server)
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(_AccessLog(), server)
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1]))
