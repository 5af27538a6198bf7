"""The fields of the platform's metering event (shared contracts); "api or tool_name" as both."""

CONTRACT_FIELDS = frozenset({
    "event_id", "timestamp", "gateway_id", "instance", "mode", "tenant_id", "user_id", "consumer_id",
    "api", "tool_name", "route", "method", "http_status", "status", "latency_ms", "t_gateway_ms",
    "t_backend_ms", "request_size_bytes", "response_size_bytes", "scopes", "roles", "trace_id",
})
