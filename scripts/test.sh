#!/usr/bin/env bash
# Install what the tests need (redis-server, a virtualenv with .[dev]) and run them all:
# lint, types, then pytest. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (Debian package)"
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

# redis-sentinel for the Sentinel failover tests (tests/support/redis_sentinel.py starts its
# own sentinels on free ports); the package's own service is stopped so it holds no port
if ! command -v redis-sentinel >/dev/null 2>&1; then
  echo "== installing redis-sentinel (Debian package)"
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends redis-sentinel >/dev/null
  { $SUDO service redis-sentinel stop || true; } >/dev/null 2>&1
fi

# PostgreSQL for the Django tests (tests/support/postgres.py runs initdb in a temp dir);
# if it cannot be installed, those tests skip and say why
if ! dpkg -s postgresql >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "== installing postgresql (Debian package)"
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends postgresql \
    >/dev/null; } || echo "== postgresql not installed: the PostgreSQL tests will skip"
fi

# RabbitMQ for the AMQP tests (tests/support/rabbitmq.py starts a private node on free
# loopback ports); a policy-rc.d keeps the package's own service from starting at install
if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  echo "== installing rabbitmq-server (Debian package)"
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  POLICY_ADDED=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    POLICY_ADDED=1
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
  if [ -n "$POLICY_ADDED" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

# headless Chromium (and a font with CJK glyphs for the seed's labels) for the dashboard's
# browser tests (tests/integration/test_dashboard_browser.py drives it with Playwright;
# `playwright install` is never run: the Debian browser is used)
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (Debian package)"
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei >/dev/null
fi

VENV="${CELERIAC_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  python3 -m venv "$VENV"
fi
echo "== installing celeriac[dev]"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "== ruff"
"$VENV/bin/ruff" check src tests bench examples
"$VENV/bin/ruff" format --check src tests bench examples
echo "== mypy --strict"
"$VENV/bin/mypy"
echo "== pytest"
"$VENV/bin/python" -m pytest "$@"
