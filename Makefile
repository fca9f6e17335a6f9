# mlsd — one command per job. `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint typecheck unit chaos bench install uninstall clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/python -c 'import mlsd, pyinotify, maxminddb, aiosmtplib, sdnotify, structlog'
	touch $(STAMP)

LINTED := mlsd tests $(wildcard bench) contrib

lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# The tests and benchmarks are typed like the package: a test helper with a wrong type
# tests the wrong thing.
TYPED := mlsd tests $(wildcard bench)

typecheck: venv
	$(BIN)/mypy --strict $(TYPED)
	# A second run: the demo's run.py and bench/run.py are both top-level `run` modules.
	$(BIN)/mypy --strict contrib/demo/run.py

# An absolute data file: the daemon's subprocesses run in temporary directories, and each
# writes its own data file beside this one for pytest-cov to combine. Some tests run mlsd
# as an unprivileged user (setpriv): the directory is sticky and writable by all, like /tmp.
COVDIR := $(CURDIR)/.coverage-data
unit: venv
	install -d -m 1777 '$(COVDIR)'
	COVERAGE_FILE='$(COVDIR)/coverage' $(BIN)/pytest --cov=mlsd --cov-report=term-missing:skip-covered $(PYTEST_ARGS)
	@# The figure per role: the contract modules at the top, then ingest, enrich, report, app.
	COVERAGE_FILE='$(COVDIR)/coverage' $(BIN)/python -m tests.coverage_roles

test: lint typecheck unit

# Many seeds of the randomized chaos suite (tests/chaoskit.py); a few run in `make test`.
# One summary line; each failing seed prints its trace. FIRST=N starts at seed N.
SEEDS ?= 200
FIRST ?= 0
chaos: venv
	$(BIN)/python -m tests.chaoskit --seeds $(SEEDS) --first $(FIRST)

# The daemon in the foreground: ./var/ for CSV and state, /var/log/mail.log or LOG=path,
# else a demo log fed with real corpus lines. Ctrl-C stops it cleanly.
run: venv
	$(BIN)/python contrib/demo/run.py $(if $(LOG),--log '$(LOG)')

bench: venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Installation: mlsd and its dependencies in their own virtual environment under
# $(PREFIX)/lib/mlsd, the command in $(PREFIX)/bin, the man page mlsd(8), the unit, and the example config as
# /etc/mlsd/mlsd.conf unless one exists. DESTDIR stages it all (packaging): the venv is
# built in place and its paths rewritten to drop DESTDIR: in the text files (scripts,
# pyvenv.cfg) by sed, in the bytecode by compiling again with the final path recorded
# (tracebacks and inspect would otherwise name the staging directory).
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
UNITDIR ?= $(SYSCONFDIR)/systemd/system
APPDIR := $(PREFIX)/lib/mlsd
MANDIR ?= $(PREFIX)/share/man

install:
	rm -rf '$(DESTDIR)$(APPDIR)'
	$(PYTHON) -m venv '$(DESTDIR)$(APPDIR)'
	'$(DESTDIR)$(APPDIR)/bin/python' -m pip install --quiet --disable-pip-version-check .
	'$(DESTDIR)$(APPDIR)/bin/python' -c 'import mlsd.app.service, pyinotify, maxminddb, aiosmtplib, sdnotify, structlog'
	if [ -n '$(DESTDIR)' ]; then \
	  grep -rlI --null -F '$(DESTDIR)$(APPDIR)' '$(DESTDIR)$(APPDIR)/bin' '$(DESTDIR)$(APPDIR)/pyvenv.cfg' \
	    | xargs -0 -r sed -i 's#$(DESTDIR)$(APPDIR)#$(APPDIR)#g'; \
	  '$(DESTDIR)$(APPDIR)/bin/python' -m compileall -q -f -s '$(DESTDIR)' -p / \
	    '$(DESTDIR)$(APPDIR)/lib' >/dev/null; \
	fi
	install -d -m 0755 '$(DESTDIR)$(PREFIX)/bin' '$(DESTDIR)$(UNITDIR)' '$(DESTDIR)$(SYSCONFDIR)/mlsd' \
	  '$(DESTDIR)$(MANDIR)/man8'
	install -m 0644 mlsd.8 '$(DESTDIR)$(MANDIR)/man8/mlsd.8'
	ln -sfn '$(APPDIR)/bin/mlsd' '$(DESTDIR)$(PREFIX)/bin/mlsd'
	sed 's#/usr/local/bin/mlsd#$(PREFIX)/bin/mlsd#; s#/etc/mlsd/#$(SYSCONFDIR)/mlsd/#g' \
	  contrib/systemd/mlsd.service > '$(DESTDIR)$(UNITDIR)/mlsd.service'
	chmod 0644 '$(DESTDIR)$(UNITDIR)/mlsd.service'
	if [ -e '$(DESTDIR)$(SYSCONFDIR)/mlsd/mlsd.conf' ]; then \
	  echo "kept the existing $(SYSCONFDIR)/mlsd/mlsd.conf (the new example: mlsd.conf.example)"; \
	else \
	  install -m 0644 mlsd.conf.example '$(DESTDIR)$(SYSCONFDIR)/mlsd/mlsd.conf'; \
	fi
	@echo "installed; next: mlsd setup (it inspects this machine and writes $(SYSCONFDIR)/mlsd/mlsd.conf," \
	  "keeping the current one as a dated copy), then the commands it prints"

# What install put there, and nothing else: the config (/etc/mlsd/mlsd.conf, perhaps
# edited) and the state, CSV and logs (/var/lib/mlsd, /var/log/mlsd) stay.
uninstall:
	@echo "stop it first if it runs: systemctl disable --now mlsd"
	rm -rf '$(DESTDIR)$(APPDIR)'
	if [ -L '$(DESTDIR)$(PREFIX)/bin/mlsd' ]; then rm -f '$(DESTDIR)$(PREFIX)/bin/mlsd'; fi
	rm -f '$(DESTDIR)$(MANDIR)/man8/mlsd.8' '$(DESTDIR)$(UNITDIR)/mlsd.service'
	@echo "uninstalled; kept $(SYSCONFDIR)/mlsd/mlsd.conf and the state, CSV and logs" \
	  "(/var/lib/mlsd, /var/log/mlsd): remove them by hand if they are no longer wanted"

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache .coverage .coverage-data build *.egg-info
