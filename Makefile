# Two commands matter: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint ui bench bench-peers postgres mariadb browser odata-cap clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's PostgreSQL server for the tests (they start their own instance on a loopback port).
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "PostgreSQL tests need Debian's postgresql package: sudo apt-get install postgresql"; fi

# Debian's MariaDB server for the tests (they start their own instance, as the mysql user, on
# a loopback port in a temporary directory).
mariadb:
	@if [ -x /usr/sbin/mariadbd ] && [ -x /usr/bin/mariadb-install-db ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null; \
	else echo "MariaDB tests need Debian's mariadb-server package: sudo apt-get install mariadb-server"; fi

# Debian's Chromium for the browser test of the Dagster UI.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "The UI test needs Debian's chromium package: sudo apt-get install chromium"; fi

# SAP CAP, the third-party OData v4 server the odata provider's interop tests start
# (tests/odata_cap: npm ci from the committed package-lock.json, again when it changes;
# no install scripts: SQLite runs as sql.js, WebAssembly shipped in the npm package).
CAP_DIR := tests/odata_cap
odata-cap: $(CAP_DIR)/node_modules/.package-lock.json

$(CAP_DIR)/node_modules/.package-lock.json: $(CAP_DIR)/package.json $(CAP_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	else echo "The OData interop tests need node and npm: sudo apt-get install nodejs npm"; exit 1; fi
	cd $(CAP_DIR) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

demo: setup
	$(BIN)/python -m l2sync_dagster.demo connections

lint: setup
	$(BIN)/ruff check .

# two test processes, one test file each at a time (files share their servers and fixtures):
# the suite waits on servers and subprocesses as much as it computes
test: setup postgres mariadb browser odata-cap lint
	$(BIN)/pytest -q -n 2 --dist loadfile

ui: setup
	mkdir -p .dagster_home
	cp dagster.yaml .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/python -m l2sync_dagster.demo.ui

bench: setup
	$(BIN)/python bench/reconcile_bench.py
	$(BIN)/python bench/sql_sync_bench.py
	$(BIN)/python bench/exchange_ews_bench.py --contacts 10000 --latency-ms 20
	$(BIN)/python bench/graph_bench.py --count 10000 --latency-ms 20
	$(BIN)/python bench/dataverse_bench.py --accounts 20000 --latency-ms 20

# l2sync against dlt, sling and a plain COPY (bench/peers/; the peers get their own venv there)
bench-peers: setup postgres
	$(BIN)/python bench/peers/run.py

clean:
	rm -rf $(VENV) .l2sync data .dagster_home
