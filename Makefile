# Switchboard: `make run` starts the platform, `make test` checks it. `make help` lists the rest.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# The test suite runs on this machine's PostgreSQL and Redis (override on the command line).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/switchboard
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) VAR_DIR=$(CURDIR)/var/test
PYTEST_WORKERS ?= 2
# Browser tests drive Debian's Chromium; `make test` installs the package when it is missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Local development starts without the TOTP step; production (the setting's default) requires it.
ADMIN_REQUIRE_TOTP ?= false

.PHONY: help venv run test lint fmt bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install the pinned requirements

run: venv ## migrate, create admin and demos, start web + worker + beat on http://127.0.0.1:$${PORT:-8000}
	$(PY) manage.py createdb
	$(PY) manage.py migrate --noinput
	ADMIN_REQUIRE_TOTP=$(ADMIN_REQUIRE_TOTP) $(PY) manage.py bootstrap
	ADMIN_REQUIRE_TOTP=$(ADMIN_REQUIRE_TOTP) exec $(PY) manage.py serve

$(CHROMIUM):
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium \
	  || (DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get update \
	      && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium)

test: venv $(CHROMIUM) ## ruff, Django checks, migrations check and the whole test suite (PostgreSQL + Redis)
	$(VENV)/bin/ruff check .
	$(TEST_ENV) $(PY) manage.py createdb
	$(TEST_ENV) $(PY) manage.py check
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(VENV)/bin/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

lint: venv ## ruff check
	$(VENV)/bin/ruff check .

fmt: venv ## ruff format and import sorting
	$(VENV)/bin/ruff check --fix --select I .
	$(VENV)/bin/ruff format .

bench: venv ## benchmarks: each prints ratios against a baseline measured in the same run
	$(TEST_ENV) bash bench/run.sh

clean: ## remove the virtualenv and local state (var/)
	rm -rf $(VENV) var
