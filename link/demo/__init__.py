"""`stoa-link demo`: the whole sidecar on one machine with embedded defaults."""
