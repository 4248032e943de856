# The two commands of the README:
#   make demo   set up everything and run the whole gateway on embedded defaults with a simulated fleet
#   make test   set up everything (including the system packages the tests use) and run lint, types and tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_ARGS ?=

.PHONY: demo test lint typecheck pytest system-deps broker-deps node-deps bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# Debian packages the tests start for real: the mosquitto broker, nats-server (a 3-node cluster for the
# scale-out tests), VictoriaMetrics (it speaks the InfluxDB v2 write API) for the InfluxDB sink, Chromium with
# its driver (and CJK fonts) for the web console tests, and systemd (systemd-analyze checks the shipped unit).
SYSTEM_PACKAGES := mosquitto nats-server victoria-metrics chromium chromium-driver fonts-noto-cjk systemd
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages the tests use:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Node.js and an independent RFC 8785 implementation (npm `canonicalize`, pinned) for the test in which another
# language recomputes a ticket's seal; into .cache/node, never the system.
CANONICALIZE := canonicalize@2.1.0
node-deps:
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "installing Debian's Node.js for the seal interoperability test"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	@[ -f .cache/node/node_modules/canonicalize/package.json ] || \
		npm install --silent --no-audit --no-fund --prefix .cache/node $(CANONICALIZE)

# The demo's embedded broker is mosquitto where it is installed (amqtt otherwise, slower above ~3,000 msg/s).
broker-deps:
	@dpkg-query -W -f='$${Status}' mosquitto 2>/dev/null | grep -q "install ok installed" || { \
		echo "installing Debian's mosquitto for the embedded broker"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto \
		|| echo "mosquitto could not be installed; the gateway falls back to its amqtt broker"; }

demo: $(BIN)/.installed broker-deps
	$(BIN)/appliance-gateway demo $(DEMO_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check gateway firmware_sim tests benchmarks

typecheck: $(BIN)/.installed
	$(BIN)/mypy

pytest: $(BIN)/.installed system-deps node-deps
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(BIN)/.installed system-deps
	$(BIN)/python -m benchmarks.ingest_throughput
	$(BIN)/python -m benchmarks.default_broker
	$(BIN)/python -m benchmarks.ticket_latency
	$(BIN)/python -m benchmarks.serial_decoders
	$(BIN)/python -m benchmarks.serial_ports
	$(BIN)/python -m benchmarks.rule_engine
	$(BIN)/python -m benchmarks.outbox_delivery
	$(BIN)/python -m benchmarks.delivery_faults
	$(BIN)/python -m benchmarks.load_faults
	$(BIN)/python -m benchmarks.checkpoint
	$(BIN)/python -m benchmarks.soak
	$(BIN)/python -m benchmarks.history_write
	$(BIN)/python -m benchmarks.device_page
	$(BIN)/python -m benchmarks.influx_sink
	$(BIN)/python -m benchmarks.fleet_generator
	$(BIN)/appliance-gateway score
	$(BIN)/python -m benchmarks.harsh_mix 1 13

clean:
	rm -rf $(VENV) var .cache .pytest_cache .mypy_cache .ruff_cache
