"""``celeriac worker -B``: the beat loop on a thread of the worker's main process, stopped
when the worker stops. Several ``-B`` workers on one broker are safe: each run is sent once."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ..signals import beat_embedded_init
from .scheduler import Beat

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


class EmbeddedBeat:
    def __init__(self, service: Beat) -> None:
        self.service = service
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="celeriac-beat", daemon=True)

    @classmethod
    def start(cls, app: Celeriac, worker: object) -> EmbeddedBeat:
        embedded = cls(Beat(app))
        if beat_embedded_init.receivers:
            beat_embedded_init.send(sender=embedded.service, worker=worker)
        embedded._thread.start()
        return embedded

    def _run(self) -> None:
        try:
            self.service.run(self._stop)
        except BaseException:
            logger.critical("beat: the embedded beat stopped on an error", exc_info=True)
            raise

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            logger.warning("beat: the embedded beat did not stop in %.0f s", STOP_TIMEOUT_S)
            return
        self.service.close()
