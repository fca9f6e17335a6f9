# mlsd — one command per job. `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint typecheck unit bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/python -c 'import mlsd, pyinotify, maxminddb, aiosmtplib, sdnotify, structlog'
	touch $(STAMP)

LINTED := mlsd tests $(wildcard bench)

lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: venv
	$(BIN)/mypy --strict mlsd

unit: venv
	$(BIN)/pytest --cov=mlsd --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

test: lint typecheck unit

run: venv
	@mkdir -p var
	$(BIN)/mlsd parse --format csv tests/corpus/maillogsentinel/sample_sasl.log

bench: venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache .coverage build *.egg-info
