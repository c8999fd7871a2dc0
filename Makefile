# Two entry points do all set-up on a fresh machine (Python 3.10+ with venv):
#   make test                                   install into .venv, run the test suite
#   make search SPACE=spaces/cpu.yaml DATA=data/fer2013.csv   install, run a search
VENV ?= .venv
PY := $(VENV)/bin/python
SPACE ?= spaces/cpu.yaml
DATA ?= data/fer2013.csv
ARGS ?=
# pytest-xdist workers (0: none; more on a bigger machine, e.g. TEST_WORKERS=8). A file's tests
# share a worker (--dist loadgroup and tests/conftest.py), so a module's shared search runs once,
# and the smoke search's users share one; groups holding a real search are handed out first
# (--no-loadscope-reorder keeps that order). On 2 cores (AMD EPYC): 5 min 28 s to 7 min 07 s
# with two workers, the cores ~90% busy; one process leaves them ~40% idle (a search waits on
# Ray's start-up and its trial processes): 11 min 07 s, with slightly larger test searches.
TEST_WORKERS ?= 2

.PHONY: install test search bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	touch $@

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

search: install
	$(PY) -m search.run $(SPACE) --data $(DATA) $(ARGS)
