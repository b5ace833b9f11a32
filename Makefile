# Permission-first mailer. `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install run migrate key user test lint bench clean lock

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## Install the service and its dev tools into .venv

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

lock: ## Resolve the newest versions pyproject.toml allows into constraints.txt (then make test)
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet -e ".[dev]"
	{ sed -n '1,3p' constraints.txt; .venv-lock/bin/pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .venv-lock

mailer.toml:
	cp mailer.example.toml mailer.toml

migrate: install mailer.toml ## Apply database migrations (MAILER_DATABASE_URL, default SQLite)
	MAILER_DEV=$${MAILER_DEV:-1} $(PY) -m mailer migrate

run: install mailer.toml migrate ## Serve on SQLite at :8000 with the worker; mail goes to var/outbox/
	MAILER_DEV=$${MAILER_DEV:-1} MAILER_SMTP_PORT=$${MAILER_SMTP_PORT:-2526} $(PY) -m mailer serve --host $(HOST) --port $(PORT) --with-worker --with-sink var/outbox

key: install mailer.toml ## Create an API key: make key SCOPE=shop NAME=webshop (printed once)
	@MAILER_DEV=$${MAILER_DEV:-1} $(PY) -m mailer keys create --scope $(or $(SCOPE),shop) --name $(or $(NAME),$(or $(SCOPE),shop))

user: install mailer.toml ## A console account: make user EMAIL=mia@shop.be ROLE=marketer|admin (asks the password)
	@MAILER_DEV=$${MAILER_DEV:-1} $(PY) -m mailer users create --email "$(EMAIL)" --role $(or $(ROLE),marketer)

test: install ## Run the tests (SQLite and PostgreSQL on 127.0.0.1:5432)
	$(PY) -m pytest

lint: install ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: install ## Benchmarks (bench/*.py; several minutes each); figures go to bench/results/
	$(PY) bench/ingest.py
	$(PY) bench/audience.py
	$(PY) bench/dispatch.py
	$(PY) bench/bounces.py
	$(PY) bench/retention.py
	$(PY) bench/oneclick.py

clean: ## Remove the venv, local database and caches
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
