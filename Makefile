# gankit: `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
# They create .venv, install gankit with its dependencies, and get Fashion-MNIST.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_STAMP := $(VENV)/.demo-stamp
TEST_STAMP := $(VENV)/.test-stamp
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The suite runs in parallel processes of one thread each (pytest-xdist): most tests are small,
# single-threaded work and process start-ups, which two one-thread workers get through in ~0.6x
# the time of one two-thread process on a 2-core CPU (README, "Quick start"). One worker per core,
# at most 8 (each holds its own torch); `make test TEST_JOBS=1` runs them one after another.
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n > 8 ? 8 : n )))
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist worksteal

.PHONY: demo test test-e2e test-all install docs data emoji browser postgres figures clean help

help:
	@echo "make demo   - install, get Fashion-MNIST, train the default preset for 3 minutes, write the report (~4 min after the install)"
	@echo "make test   - install, get Fashion-MNIST, run the test suite (fast tests, in-process), build the guide"
	@echo "make test-e2e - also chromium, and the tests that start processes: the README's tour as typed, browsers, torchrun (CI runs both)"
	@echo "make test-all - also postgresql, and the test suite including slow tests"
	@echo "make docs   - build the user guide into site/ (MkDocs)"
	@echo "make figures - remake the README's and the guide's pictures from today's code (~20 min on a 2-core CPU)"
	@echo "make emoji  - fetch 3,781 emoji (npm's emoji-datasource-google, 74 MB) into data/emoji/<category>/ at 64x64"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The demo needs gankit and its core dependencies only; the tests also need every extra
# (app, tune, inception, hub, docs) and the test tools.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $(DEMO_STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(TEST_STAMP) $(DEMO_STAMP)

install: $(TEST_STAMP)

# Debian's dataset-fashion-mnist package holds the original IDX files. Skipped when they are
# already there or GANKIT_DATA points elsewhere.
data:
	@if [ -n "$$GANKIT_DATA" ] || [ -f $(FMNIST) ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian's dataset-fashion-mnist (31 MB)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
	  echo "No apt-get here: gankit will try torchvision's download, or set GANKIT_DATA to a folder with the four Fashion-MNIST IDX files."; \
	fi

# A small RGB dataset nobody here drew: the emoji of npm's emoji-datasource-google (MIT), laid out
# as data/emoji/<category>/*.png at 64x64 on white (tools/get_emoji.py). Needs npm.
EMOJI := data/emoji
emoji: $(DEMO_STAMP)
	@if [ -d $(EMOJI)/smileys-emotion ]; then exit 0; fi; \
	command -v npm >/dev/null 2>&1 || { echo "make emoji needs npm (Debian: apt-get install npm)"; exit 1; }; \
	tmp=$$(mktemp -d) && (cd $$tmp && npm pack -q emoji-datasource-google >/dev/null) \
	&& $(BIN)/python tools/get_emoji.py $$tmp/emoji-datasource-google-*.tgz $(EMOJI); rc=$$?; rm -rf $$tmp; exit $$rc

# Debian's chromium, for the tests that open the app and a report in a real browser (Playwright drives it).
browser:
	@if command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then exit 0; fi; \
	echo "Installing Debian's chromium for the browser test"; \
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null

# Debian's PostgreSQL server, for the test of `gankit tune --storage postgresql://...` against a real
# server (the test starts its own throw-away instance from these binaries).
postgres:
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 \
	  || ! command -v apt-get >/dev/null 2>&1; then exit 0; fi; \
	echo "Installing Debian's postgresql for the tuning storage test"; \
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql >/dev/null

demo: $(DEMO_STAMP) data
	$(BIN)/gankit train --preset default --minutes 3
	$(BIN)/gankit report "$$(ls -td runs/*/ | head -1)"

# The user guide is built strictly (a broken link or a stale API reference fails the build).
docs: $(TEST_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d site

# make test: the tests that run inside pytest's processes. make test-e2e: those that start their own
# (marked e2e: the README's tour run as typed by the `gankit` script, Chromium, torchrun, signals to
# a training process, locks held by another process); tests/test_suite.py checks the marks.
test: $(TEST_STAMP) data
	$(PYTEST) -m "not slow and not e2e"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d $$(mktemp -d)

test-e2e: $(TEST_STAMP) data browser
	$(PYTEST) -m "e2e and not slow"

test-all: $(TEST_STAMP) data browser postgres
	$(PYTEST)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d $$(mktemp -d)

# Every picture the README and the guide show (bench/figures.py --list names each one's maker).
figures: $(TEST_STAMP) data browser
	$(BIN)/python bench/figures.py

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .hypothesis
