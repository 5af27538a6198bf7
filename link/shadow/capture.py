"""The ext_proc service of shadow mode: watches streams, answers nothing, builds samples.

Envoy runs ext_proc in observability mode for opted-in APIs: each request is
one stream of headers and body chunks, sent without waiting. This service
keeps at most ``max_body_bytes`` of each body, and when the response ends (or
the stream does) hands the raw observation to the API's
:class:`~link.shadow.sample.SampleBuilder`, which masks it; only the masked
sample reaches the store. Raw bytes live only in this stream's memory.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from link.envoyconf.shadow import SHADOW_API_METADATA
from link.grpc.headers import header_map
from link.shadow.sample import Observation, SampleBuilder
from link.shadow.store import SampleStore

__all__ = ["ShadowCapture"]

_log = logging.getLogger("stoa.link.shadow")


class ShadowCapture(ep_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """Observability-mode ext_proc: one sample per finished exchange of an opted-in API."""

    def __init__(self, builders: Mapping[str, SampleBuilder], store: SampleStore, max_body_bytes: int) -> None:
        self._builders = dict(builders)
        self._store = store
        self._max_body = max_body_bytes
        self.seen = 0
        self.ignored = 0

    async def Process(
        self, request_iterator: AsyncIterator[ep.ProcessingRequest], context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[ep.ProcessingResponse]:
        api = ""
        for key, value in context.invocation_metadata() or ():
            if key == SHADOW_API_METADATA:
                api = str(value)
        builder = self._builders.get(api)
        obs: Observation | None = None
        req_body = bytearray()
        resp_body = bytearray()
        done = False
        try:
            async for msg in request_iterator:
                if builder is None:
                    continue  # not opted in: read to the end, keep nothing
                kind = msg.WhichOneof("request")
                if kind == "request_headers":
                    h = header_map(msg.request_headers.headers)
                    obs = Observation(method=h.get(":method", "GET"), path=h.get(":path", "/"), request_headers=h)
                elif obs is None:
                    continue
                elif kind == "request_body":
                    obs.request_truncated |= _append(req_body, msg.request_body.body, self._max_body)
                elif kind == "response_headers":
                    h = header_map(msg.response_headers.headers)
                    obs.response_headers = h
                    try:
                        obs.status = int(h.get(":status", "0"))
                    except ValueError:
                        obs.status = 0
                    if msg.response_headers.end_of_stream:
                        done = True
                        break
                elif kind == "response_body":
                    obs.response_truncated |= _append(resp_body, msg.response_body.body, self._max_body)
                    if msg.response_body.end_of_stream:
                        done = True
                        break
        except (grpc.aio.AioRpcError, ConnectionError):
            pass  # Envoy closed the stream; what was seen may still make a sample
        if builder is None:
            self.ignored += 1
            return
        if obs is not None and (done or obs.status):
            obs.request_body = bytes(req_body)
            obs.response_body = bytes(resp_body)
            try:
                self._store.add(builder.build(obs))
                self.seen += 1
            except Exception:  # a sample is never worth a crash of the service
                _log.exception("shadow: could not build a sample")
        # Observability mode: Envoy expects (and ignores) no answer.
        if False:  # pragma: no cover - makes this an async generator
            yield ep.ProcessingResponse()


def _append(buf: bytearray, chunk: bytes, cap: int) -> bool:
    """Keep at most ``cap`` bytes; True when something was cut."""
    room = cap - len(buf)
    if room <= 0:
        return bool(chunk)
    buf += chunk[:room]
    return len(chunk) > room
