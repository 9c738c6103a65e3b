# The two set-up commands: `make demo` and `make test`. Each creates .venv and installs the
# locked dependencies (uv.lock) on first use; only Python 3.11+ and make are needed.
PY ?= python3
VENV := .venv
UV := $(VENV)/bin/uv
SYNCED := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test lint lock postgres-test bench

$(UV):
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet uv==0.13.9

$(SYNCED): $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet
	@touch $@

demo: $(SYNCED)
	$(VENV)/bin/qingfeng demo

test: $(SYNCED)
	$(VENV)/bin/qingfeng bank check --strict question_bank
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -p no:cacheprovider

lint: $(SYNCED)
	$(VENV)/bin/ruff check .

# Benchmarks, SQLite and PostgreSQL (results: docs/benchmarks.md). A short run:
# make bench BENCH_ARGS="--quick --backend sqlite"
bench: $(SYNCED)
	$(VENV)/bin/python -m bench.bank_load
	$(VENV)/bin/python -m bench.fanout $(BENCH_ARGS)
	$(VENV)/bin/python -m bench.ingest $(BENCH_ARGS)
	$(VENV)/bin/python -m bench.reports $(BENCH_ARGS)
	$(VENV)/bin/python -m bench.footprint $(BENCH_ARGS)

lock: $(UV)
	$(UV) lock
