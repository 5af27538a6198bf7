"""The project's protobuf messages, generated from proto/ by scripts/gen_proto.py."""

from stoa_proto.stoa.errors.v1.snapshot_pb2 import ErrorSnapshot, HttpExcerpt
from stoa_proto.stoa.metering.v1.metering_pb2 import MeteringEvent

__all__ = ["ErrorSnapshot", "HttpExcerpt", "MeteringEvent"]
