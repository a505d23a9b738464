"""``--statedb``: keep revoked task ids in a file so they survive a worker restart even when
the broker does not keep them (Celery's option, same meaning)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from ..control import REVOKE_TTL_S

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)


class StateDB:
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def load(self, app: Celeriac) -> None:
        if not self.path.exists():
            return
        try:
            data = orjson.loads(self.path.read_bytes())
            revoked = {str(k): float(v) for k, v in dict(data.get("revoked", {})).items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("ignoring unreadable state file %s: %s", self.path, exc)
            return
        now = time.time()
        alive = [task_id for task_id, until in revoked.items() if until > now]
        if alive:
            app.broker.add_revoked(alive, REVOKE_TTL_S)
            logger.info("restored %d revoked task id(s) from %s", len(alive), self.path)

    def save(self, app: Celeriac) -> None:
        try:
            ids = app.broker.revoked_ids()
        except Exception as exc:  # broker gone at shutdown: keep the previous file
            logger.warning("could not save revoked ids to %s: %s", self.path, exc)
            return
        until = time.time() + REVOKE_TTL_S
        payload = orjson.dumps({"revoked": dict.fromkeys(sorted(ids), until)})
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, self.path)
