#!/usr/bin/env bash
# The seed's worker: prefork, 4 children, the seed's three queues.
# Broker: CELERIAC_BROKER_URL (e.g. redis://127.0.0.1:6379/0), else sqlite:///celeriac.sqlite3 here.
set -euo pipefail
cd "$(dirname "$0")"
exec celeriac -A celery_app worker \
    --pool=prefork \
    --concurrency=4 \
    --queues=basic,advanced,realworld \
    "$@"
