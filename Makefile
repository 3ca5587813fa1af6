# The two commands a fresh machine needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip check
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m pytest -q

# The studio on http://127.0.0.1:8765/ (ARGS="--port 9000 --open" and so on); Ctrl-C stops it.
serve: $(STAMP)
	$(PY) -m masquerade serve $(ARGS)

bench: $(STAMP)
	$(PY) -m masquerade bench --memory-check

clean:
	rm -rf $(VENV) out build *.egg-info
