#!/usr/bin/env bash
# Install what the tests need (Debian servers, a virtualenv with .[dev]) and run them all:
# lint, types, then pytest. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests start themselves on free loopback ports: redis-server and
# redis-sentinel (tests/support/redis_*.py), postgresql for the Django tests (initdb in a
# temp dir), rabbitmq-server for the AMQP tests (a private node), chromium and a CJK font
# for the dashboard's browser tests (Playwright drives the Debian browser; `playwright
# install` is never run). One apt-get run installs whatever is missing; a policy-rc.d keeps
# the packages' own services from starting, and any that did start are stopped.
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
{ dpkg -s postgresql >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; } || need+=(postgresql)
{ command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; } \
  || need+=(rabbitmq-server)
browser=()
command -v chromium >/dev/null 2>&1 || browser+=(chromium chromium-driver fonts-wqy-microhei)
if [ "$((${#need[@]} + ${#browser[@]}))" -gt 0 ]; then
  echo "== installing ${need[*]} ${browser[*]} (Debian packages)"
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
  if [ "${#need[@]}" -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if [ "${#browser[@]}" -gt 0 ]; then
    $SUDO apt-get install -y -qq "${browser[@]}" >/dev/null
  fi
  if [ -n "$POLICY_ADDED" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  for service in redis-server redis-sentinel postgresql rabbitmq-server; do
    { $SUDO service "$service" stop || true; } >/dev/null 2>&1
  done
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
