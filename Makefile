# Two entry points do all set-up on a fresh machine (Python 3.10+ with venv):
#   make test                                   install into .venv, run the test suite
#   make search SPACE=spaces/cpu.yaml DATA=data/fer2013.csv   install, run a search
VENV ?= .venv
PY := $(VENV)/bin/python
SPACE ?= spaces/cpu.yaml
DATA ?= data/fer2013.csv
ARGS ?=
# The suite's end-to-end searches mostly wait (Ray starting, trial processes importing torch):
# four at once keep two cores busy. A file's tests share a worker (--dist loadgroup and
# tests/conftest.py), so a module's shared search runs once; the smoke search's users share one.
TEST_WORKERS ?= 4

.PHONY: install test search bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	touch $@

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

search: install
	$(PY) -m search.run $(SPACE) --data $(DATA) $(ARGS)
