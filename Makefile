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
# Zato's own WebSocket client, in a virtualenv of its own (its old dependencies must not touch
# .venv): the tests check that zato-websocket-client 1.6.1 works unchanged against our channels.
ZATO_VENV := var/zato-client-venv
ZATO_STAMP := $(ZATO_VENV)/.installed-stamp
ZATO_PIP := $(ZATO_VENV)/bin/pip install --quiet --disable-pip-version-check
# Local development starts without the TOTP step; production (the setting's default) requires it.
ADMIN_REQUIRE_TOTP ?= false
# ... and lets scripts use the management API with a password (production: API tokens only).
MANAGE_API_BASIC_AUTH ?= true

.PHONY: help venv run test test-servers lint fmt bench bench-smoke clean

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
	ADMIN_REQUIRE_TOTP=$(ADMIN_REQUIRE_TOTP) MANAGE_API_BASIC_AUTH=$(MANAGE_API_BASIC_AUTH) exec $(PY) manage.py serve

$(CHROMIUM):
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium \
	  || (DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get update \
	      && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium)

# The LDAP and SFTP tests run Debian's slapd and sshd as private processes on free loopback ports
# (tests/servers/); the script installs the packages that are missing and keeps their system daemons stopped.
TEST_SERVER_PACKAGES := slapd ldap-utils openssh-server openssh-client
TEST_SERVER_FILES := /usr/sbin/slapd /usr/bin/ldapsearch /usr/sbin/sshd /usr/bin/sftp
test-servers: ## install Debian's slapd, ldap-utils and openssh-server for the tests, when missing
	@for file in $(TEST_SERVER_FILES); do test -e $$file || missing=1; done; \
	  if [ -n "$$missing" ]; then $(SUDO) bash tests/servers/install_debian_packages.sh $(TEST_SERVER_PACKAGES); fi

$(ZATO_STAMP):
	python3 -m venv $(ZATO_VENV)
	$(ZATO_PIP) requests==2.34.2 gevent==26.9.0 ws4py==0.6.0 six==1.17.0 future==1.0.0 lxml==6.1.3 \
	  zato-ext-bunch==1.3 hvac==2.4.0 typing_extensions==4.16.0 ujson==6.1.0 'setuptools<58' wheel
	$(ZATO_PIP) --no-deps zato-client==3.2.1 zato-websocket-client==1.6.1 zato-common==3.2.1 \
	  zato-vault-client==1.4 SQLAlchemy==1.3.24
	$(ZATO_PIP) --no-deps --no-build-isolation dictalchemy==0.1.2.7 anyjson==0.3.3
	touch $(ZATO_STAMP)

test: venv $(CHROMIUM) $(ZATO_STAMP) test-servers ## ruff, Django checks, migrations check and the whole test suite (PostgreSQL + Redis)
	$(VENV)/bin/ruff check .
	$(TEST_ENV) $(PY) manage.py createdb
	$(TEST_ENV) $(PY) manage.py check
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(VENV)/bin/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider
	$(MAKE) --no-print-directory bench-smoke

lint: venv ## ruff check
	$(VENV)/bin/ruff check .

fmt: venv ## ruff format and import sorting
	$(VENV)/bin/ruff check --fix --select I .
	$(VENV)/bin/ruff format .

bench: venv ## benchmarks: each prints ratios against a baseline measured in the same run
	$(TEST_ENV) bash bench/run.sh

bench-smoke: venv ## every benchmark with tiny sizes (bench/smoke.env): proves they run; part of `make test`
	$(TEST_ENV) bash bench/run.sh --smoke

clean: ## remove the virtualenv and local state (var/)
	rm -rf $(VENV) var
