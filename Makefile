# vlrepro: one Makefile for set-up, data, runs, tests and benchmarks. `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
SUBPROJECTS := difnet dmn gin clip4idc spatial_captioning
ARGS ?=
# Scripts run from any folder import the repository's `toydata` (and `shared_eval`, also installed editable).
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
# One thread per process for tests and toy runs: two threads on two shared cores thrash.
THREADS_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg

.PHONY: help setup test test-portability test-multinode demo tables bench bench-eval bench-decode gpu-check dmn-language-check clean $(foreach p,$(SUBPROJECTS),$(p)-data $(p)-toy $(p)-train $(p)-test $(p)-demo)

help: ## list every target
	@echo "vlrepro targets:"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-28s %s\n", $$1, $$2}'
	@for p in $(SUBPROJECTS); do \
	  printf '  %-28s %s\n' "$$p-data" "download the real $$p data and released weights into data/$$p/"; \
	  printf '  %-28s %s\n' "$$p-toy" "write the embedded toy dataset into data/toy/$$p/"; \
	  printf '  %-28s %s\n' "$$p-train" "train $$p with the original README's command (real data if present, else toy; ARGS=... adds flags)"; \
	  printf '  %-28s %s\n' "$$p-test" "evaluate $$p with the original README's command (real data if present, else toy; ARGS=...)"; \
	  printf '  %-28s %s\n' "$$p-demo" "the $$p part of make demo alone (toy data -> brief training -> evaluation, into runs/demo/$$p)"; \
	done

$(STAMP): requirements.txt shared_eval/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools==80.9.0
	$(PY) -m pip install -q -r requirements.txt
	# visdom 0.2.4 ships only as an sdist whose setup needs pkg_resources (setuptools, installed above).
	$(PY) -m pip install -q --no-build-isolation visdom==0.2.4
	$(PY) -m pip install -q --no-build-isolation --no-deps -e shared_eval
	# METEOR's resources (paraphrase table, synonyms) read once from the jar pycocoevalcap ships, cached on disk (~40 s)
	$(PY) -c "from shared_eval.meteor_resources import load_resources; load_resources()"
	touch $(STAMP)

setup: $(STAMP) ## create .venv (Python 3.11) with every dependency; re-runs only when requirements.txt changes

test: setup ## run every test suite (one process per subproject) and print "N passed, N failed"; ARGS=--runslow adds the slow ones
	@$(THREADS_ENV) $(PY) tools/run_tests.py $(ARGS)

test-portability: setup ## the parity tests again with torch/MKL dispatch forced to older CPUs (default, AVX2); not in make test
	@$(THREADS_ENV) $(PY) tools/run_tests.py --portability $(ARGS)

test-multinode: setup ## two "nodes" on 127.0.0.1 vs one process, and an elastic restart after a killed worker, per subproject; not in make test
	@$(THREADS_ENV) $(PY) tools/run_tests.py --multinode $(ARGS)

demo: setup ## toy data -> brief training -> evaluation for every subproject (two at a time); table + runs/demo/index.html
	@rm -rf runs/demo && mkdir -p runs/demo
	@$(PY) tools/run_demos.py --python $(PY) --out $(CURDIR)/runs/demo

tables: setup ## the papers' tables from the released weights (rows of tools/paper_rows.toml; missing data named per row) -> runs/tables/results.md; TOY=1: the toy checkpoints of make P-demo through the same commands
	@$(THREADS_ENV) $(PY) tools/tables.py --python $(PY) $(if $(TOY),--toy) $(ARGS)

bench-eval: setup ## shared_eval speed against pycocoevalcap (same input, same numbers)
	@$(PY) -m shared_eval.bench

bench-decode: setup ## captioners' key/value-cached decoding against the original's full-prefix path (ARGS=--quick: a few CPU minutes); runs/bench/decode.json
	@$(PY) tools/bench_decode.py $(ARGS)

bench: bench-eval bench-decode ## every benchmark: shared_eval, then each subproject's speed figures
	@for p in $(SUBPROJECTS); do \
	  if [ -f $$p/Makefile ]; then $(MAKE) --no-print-directory -C $$p bench PY=$(PY) ROOT=$(CURDIR) ARGS="$(ARGS)"; fi; \
	done

gpu-check: setup ## bf16/fp32 agreement, throughput, torch.compile, MFU of all five models on a GPU (tools/gpu_check.py; ARGS="--device cpu --tiny" on CPU)
	@$(PY) tools/gpu_check.py $(ARGS)

dmn-language-check: setup ## does DMN read the query? the toy check of dmn/README.md (~40 CPU minutes; part of bench)
	@$(MAKE) --no-print-directory -C dmn language-check PY=$(PY) ROOT=$(CURDIR)

clean: ## remove the virtual environment, toy data and run outputs (keeps downloaded real data)
	rm -rf $(VENV) data/toy runs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# P-data / P-toy / P-train / P-test / P-demo delegate to the subproject's own Makefile.
define SUBPROJECT_RULES
$(1)-data $(1)-toy $(1)-train $(1)-test: setup
	@if [ ! -f $(1)/Makefile ]; then echo "$(1) is not implemented yet"; exit 2; fi
	@$(MAKE) --no-print-directory -C $(1) $$(patsubst $(1)-%,%,$$@) PY=$(PY) ROOT=$(CURDIR) ARGS="$(ARGS)"
$(1)-demo: setup
	@mkdir -p runs/demo
	@$(THREADS_ENV) $(MAKE) --no-print-directory -C $(1) demo PY=$(PY) ROOT=$(CURDIR) OUT=$(CURDIR)/runs/demo/$(1)
endef
$(foreach p,$(SUBPROJECTS),$(eval $(call SUBPROJECT_RULES,$(p))))
