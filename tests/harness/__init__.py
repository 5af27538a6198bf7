"""Start and stop the real components the tests use (Envoy, Link, upstreams, brokers…)."""
