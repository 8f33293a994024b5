# The two commands: `make dev` runs the whole stack locally, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The suite mostly waits (Temporal timers, webhooks, servers starting): four processes halve its time
# on two cores. Each has its own Temporal, PostgreSQL and browser.
TEST_WORKERS ?= 4

.PHONY: dev test lint typecheck install system-packages clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import stripe, temporalio, flask" # fail here, not later, if the install broke
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	exec $(BIN)/revops dev

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The browser tests need Debian's chromium, the PostgreSQL tests Debian's postgresql: install them
# when this machine lets us (root or password-less sudo), else stop and say the one command to run.
# Tests then fail, never skip, when either is missing (REVOPS_REQUIRE_SYSTEM_PACKAGES).
system-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	  elif sudo -n true 2>/dev/null; then sudo="sudo"; \
	  else echo "make test needs Debian packages:$$missing. Run: sudo apt-get install -y$$missing" >&2; exit 1; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "make test needs:$$missing (no apt-get here)" >&2; exit 1; }; \
	  echo "Installing Debian packages:$$missing"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null || \
	    { echo "Installing$$missing failed. Run: sudo apt-get install -y$$missing" >&2; exit 1; }; \
	fi

test: $(STAMP) lint typecheck system-packages
	REVOPS_REQUIRE_SYSTEM_PACKAGES=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load --durations=15

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
