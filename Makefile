# Tawqi — the two commands: `make demo` and `make test`. Both install what is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tawqi-installed
VAR := $(CURDIR)/var
export SOFTHSM2_CONF ?= $(VAR)/softhsm/softhsm2.conf

.PHONY: demo test lint bench system-deps venv clean translations axe constraints

demo: system-deps $(STAMP) $(SOFTHSM2_CONF)
	$(BIN)/tawqi demo

# The suite waits on servers, subprocesses and the token more than on the CPU: a few workers
# (pytest-xdist, one test file per worker at a time) cut its wall time on 2 cores.
TEST_WORKERS ?= 3
test: system-deps $(STAMP) translations axe
	TAWQI_TEST_FORBID_SKIPS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests
	$(BIN)/ruff check .
	$(BIN)/mypy core quotas delivery pki hsm api

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core quotas delivery pki hsm api

bench: system-deps $(STAMP)
	$(BIN)/python -m bench.hsm_sign
	$(BIN)/python -m bench.ocsp
	$(BIN)/python -m bench.sign_hash
	$(BIN)/python -m bench.sign_pdf
	$(BIN)/python -m bench.verify
	$(BIN)/python -m bench.cli_start
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.load

system-deps:
	@bash scripts/system-deps.sh

venv: $(STAMP)

# Versions pinned in constraints.txt (regenerate: make constraints, after a deliberate upgrade).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The web pages' gettext catalogues, .po -> .mo (a missing .mo is compiled in memory).
translations: $(STAMP)
	$(BIN)/pybabel -q compile -d api/web/translations -D messages

# axe-core (npm registry), injected by the browser tests into every page they visit.
AXE := $(VAR)/node/node_modules/axe-core/axe.min.js
axe: $(AXE)
$(AXE):
	mkdir -p $(VAR)/node
	npm install --silent --no-audit --no-fund --prefix $(VAR)/node axe-core@4

# SoftHSM2 keeps its tokens under var/ rather than in the system-wide directory.
$(SOFTHSM2_CONF):
	mkdir -p $(VAR)/softhsm/tokens
	printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
		"$(VAR)/softhsm/tokens" > $@

constraints: $(STAMP)
	{ head -2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable \
		| grep -v '^tawqi'; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
