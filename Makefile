# Two entry points for a fresh clone: `make run` and `make test`.
# Each one creates .venv and installs what it needs; nothing is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The bot needs the chat platforms' libraries; the tests also need the test servers
# (miniircd, Synapse) and pytest, which `make run` does not install.
RUN_STAMP  := $(VENV)/.rosey-run-installed
TEST_STAMP := $(VENV)/.rosey-test-installed
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: run test bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[platforms]'
	@touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[dev,platforms,test-servers]'
	@touch $(TEST_STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/rosey run $(ARGS)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python -m bench $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,lint]'
	$(BIN)/ruff check bot tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .rosey .pytest_cache
