"""Which file an sqlite:// URL names, and the URLs the embedded broker refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from celeriac.brokers import make_broker
from celeriac.brokers.sqlite_db import MEMORY, database_path
from celeriac.config import Settings
from celeriac.errors import ConfigurationError


def test_three_slashes_name_a_path_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = database_path("sqlite:///data/celeriac.sqlite3", role="broker", allow_memory=False)
    assert path == str(tmp_path / "data" / "celeriac.sqlite3")


def test_four_slashes_name_an_absolute_path() -> None:
    path = database_path("sqlite:////var/tmp/q.sqlite3", role="broker", allow_memory=False)
    assert path == "/var/tmp/q.sqlite3"


@pytest.mark.parametrize("url", ["sqlite://:memory:", "sqlite:///:memory:", "sqlite://"])
def test_in_memory_database_is_refused_as_broker_with_the_reason(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"one process.*memory://.*sqlite:///"):
        make_broker(url, Settings())


def test_in_memory_database_is_accepted_for_results() -> None:
    assert database_path("sqlite://:memory:", role="result backend", allow_memory=True) == MEMORY


def test_url_with_a_host_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="local file"):
        database_path("sqlite://server/db", role="broker", allow_memory=False)


def test_url_with_query_options_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="broker_transport_options"):
        database_path("sqlite:///q.sqlite3?timeout=5", role="broker", allow_memory=False)
