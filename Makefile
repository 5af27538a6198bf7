# The README's commands. Each target installs what it needs on a fresh machine.
.PHONY: demo test test-fast conformance lint typecheck bench envoy-configs clean

VENV := .venv
PY := $(VENV)/bin/python

demo:
	@scripts/bootstrap.sh runtime
	$(VENV)/bin/stoa-link demo

test:
	@scripts/bootstrap.sh dev
	tests/conformance/run.sh --all
	$(PY) -m pytest -q

test-fast:
	@scripts/bootstrap.sh dev
	$(PY) -m pytest -q -m "not integration"

conformance:
	@scripts/bootstrap.sh dev
	tests/conformance/run.sh --all

lint:
	@scripts/bootstrap.sh dev
	$(VENV)/bin/ruff check link mcp_server tests bench

typecheck:
	@scripts/bootstrap.sh dev
	$(VENV)/bin/mypy link mcp_server

bench:
	@scripts/bootstrap.sh dev
	$(PY) bench/bench_dataplane.py

envoy-configs:
	@scripts/bootstrap.sh runtime
	$(PY) -m link.envoyconf.files --write
	$(PY) -m link.envoyconf.mode_files --write

clean:
	rm -rf $(VENV) build dist *.egg-info var
