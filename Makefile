# Two entry points do all set-up on a fresh machine (Python 3.10+ with venv):
#   make test                                   install into .venv, run the test suite
#   make search SPACE=spaces/cpu.yaml DATA=data/fer2013.csv   install, run a search
VENV ?= .venv
PY := $(VENV)/bin/python
SPACE ?= spaces/cpu.yaml
DATA ?= data/fer2013.csv
ARGS ?=
# pytest-xdist workers (0: none), e.g. make test TEST_WORKERS=8 on a bigger machine. A file's
# tests share a worker (--dist loadgroup and tests/conftest.py), so a module's shared search runs
# once, and the smoke search's users share one. On 2 cores two workers gain little, each search
# running slower beside another: the suite took 9 min 55 s on two, 12 min 06 s in one process
# (AMD EPYC).
TEST_WORKERS ?= 0

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
