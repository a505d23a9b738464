"""Settings: Celery's names and defaults, warnings for typos, config_from_object, env vars."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.config import Settings
from celeriac.errors import ImproperlyConfigured


@pytest.fixture
def settings_module() -> Iterator[str]:
    """An importable module of settings, removed from sys.modules afterwards."""
    name = "unit_settings_module"
    module = types.ModuleType(name)
    module.broker_url = "memory://from-module"  # type: ignore[attr-defined]
    module.task_default_queue = "from_module"  # type: ignore[attr-defined]
    module.SHOUTING = "ignored"  # type: ignore[attr-defined]
    sys.modules[name] = module
    yield name
    del sys.modules[name]


def test_defaults_use_celerys_names_and_values() -> None:
    conf = Settings()
    assert conf.task_default_queue == "celery"
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.result_expires == 86400
    assert conf.worker_prefetch_multiplier == 4
    assert conf.task_acks_late is False


def test_setting_reads_the_same_as_attribute_and_item() -> None:
    conf = Settings({"task_default_queue": "basic"})
    assert conf.task_default_queue == conf["task_default_queue"] == "basic"


def test_attribute_assignment_sets_the_setting() -> None:
    conf = Settings()
    conf.task_acks_late = True
    assert conf["task_acks_late"] is True


def test_app_keyword_settings_are_applied() -> None:
    app = Celery("cfg", broker="memory://cfg", task_default_queue="basic")
    assert app.conf.task_default_queue == "basic"


def test_unknown_setting_warns_naming_the_closest_known_one() -> None:
    conf = Settings()
    with pytest.warns(UserWarning, match=r"'task_acks_lat'.*did you mean 'task_acks_late'"):
        conf.task_acks_lat = True


def test_unknown_setting_in_app_keywords_warns_naming_the_closest_known_one() -> None:
    with pytest.warns(UserWarning, match=r"did you mean 'broker_url'"):
        Celery("cfg", broker_ulr="memory://x")


def test_unknown_setting_with_no_close_match_still_warns() -> None:
    conf = Settings()
    with pytest.warns(UserWarning, match=r"unknown setting 'zzz'"):
        conf["zzz"] = 1


def test_unknown_setting_is_kept() -> None:
    conf = Settings()
    with pytest.warns(UserWarning):
        conf["my_own_flag"] = 7
    assert conf["my_own_flag"] == 7


def test_reading_an_unknown_setting_names_the_closest_known_one() -> None:
    conf = Settings()
    with pytest.raises(AttributeError, match=r"did you mean 'result_backend'"):
        _ = conf.result_backnd


def test_config_from_object_reads_a_module_by_name(settings_module: str) -> None:
    app = Celery("cfg")
    app.config_from_object(settings_module)
    assert app.conf.task_default_queue == "from_module"


def test_config_from_object_reads_a_module_object(settings_module: str) -> None:
    app = Celery("cfg")
    app.config_from_object(sys.modules[settings_module])
    assert app.conf.broker_url == "memory://from-module"


def test_config_from_object_skips_uppercase_names(settings_module: str) -> None:
    app = Celery("cfg")
    app.config_from_object(settings_module)
    assert not app.conf.is_set("SHOUTING")


def test_config_from_object_reads_a_class() -> None:
    class Config:
        task_default_queue = "from_class"
        result_expires = 60

    app = Celery("cfg")
    app.config_from_object(Config)
    assert (app.conf.task_default_queue, app.conf.result_expires) == ("from_class", 60)


def test_config_from_object_reads_a_dotted_path_to_an_attribute(settings_module: str) -> None:
    class Config:
        task_default_queue = "from_dotted"

    sys.modules[settings_module].Config = Config  # type: ignore[attr-defined]
    app = Celery("cfg")
    app.config_from_object(f"{settings_module}.Config")
    assert app.conf.task_default_queue == "from_dotted"


def test_config_from_object_reads_a_colon_path_to_an_attribute(settings_module: str) -> None:
    class Config:
        task_default_queue = "from_colon"

    sys.modules[settings_module].Config = Config  # type: ignore[attr-defined]
    app = Celery("cfg")
    app.config_from_object(f"{settings_module}:Config")
    assert app.conf.task_default_queue == "from_colon"


def test_config_from_object_reads_a_mapping() -> None:
    app = Celery("cfg")
    app.config_from_object({"task_default_queue": "from_dict"})
    assert app.conf.task_default_queue == "from_dict"


def test_config_source_argument_is_read_at_creation(settings_module: str) -> None:
    app = Celery("cfg", config_source=settings_module)
    assert app.conf.task_default_queue == "from_module"


def test_config_from_object_with_a_missing_module_raises_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match="no_such_settings_module"):
        Celery("cfg").config_from_object("no_such_settings_module")


def test_config_from_object_with_a_missing_attribute_names_it(settings_module: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="'Missing'"):
        Celery("cfg").config_from_object(f"{settings_module}:Missing")


def test_config_from_object_drops_connections_opened_with_the_old_settings() -> None:
    app = Celery("cfg", broker="memory://before")
    assert app.broker.url == "memory://before"
    app.config_from_object({"broker_url": "memory://after"})
    assert app.broker.url == "memory://after"


def test_config_from_envvar_reads_the_module_the_variable_names(
    settings_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIT_CELERIAC_CONFIG", settings_module)
    app = Celery("cfg")
    app.config_from_envvar("UNIT_CELERIAC_CONFIG")
    assert app.conf.task_default_queue == "from_module"


def test_config_from_envvar_that_is_unset_raises_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("UNIT_CELERIAC_CONFIG", raising=False)
    with pytest.raises(ImproperlyConfigured, match="UNIT_CELERIAC_CONFIG"):
        Celery("cfg").config_from_envvar("UNIT_CELERIAC_CONFIG")


def test_broker_url_env_var_overrides_the_configured_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERIAC_BROKER_URL", "memory://from-env")
    app = Celery("cfg", broker="memory://from-code")
    assert app.broker_url == "memory://from-env"


def test_result_backend_env_var_overrides_the_configured_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", "memory://results-from-env")
    app = Celery("cfg", backend="memory://results-from-code")
    assert app.backend_url == "memory://results-from-env"


def test_backend_defaults_to_the_broker_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELERIAC_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERIAC_RESULT_BACKEND", raising=False)
    app = Celery("cfg", broker="memory://both")
    assert app.backend_url == "memory://both"


def test_broker_defaults_to_the_local_sqlite_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELERIAC_BROKER_URL", raising=False)
    assert Celery("cfg").broker_url == "sqlite:///celeriac.sqlite3"


def test_config_from_object_with_namespace_reads_prefixed_uppercase_names() -> None:
    class DjangoSettings:
        CELERY_TASK_DEFAULT_QUEUE = "from_django"
        CELERY_TASK_ACKS_LATE = True
        DEBUG = True

    app = Celery("cfg")
    app.config_from_object(DjangoSettings, namespace="CELERY")
    assert (app.conf.task_default_queue, app.conf.task_acks_late) == ("from_django", True)


def test_config_from_object_with_namespace_ignores_names_without_the_prefix() -> None:
    class DjangoSettings:
        CELERY_TASK_DEFAULT_QUEUE = "from_django"
        DEBUG = True
        task_acks_late = True

    app = Celery("cfg")
    app.config_from_object(DjangoSettings, namespace="CELERY")
    assert not app.conf.is_set("debug")
    assert not app.conf.is_set("task_acks_late")


def test_config_from_object_silent_ignores_a_missing_module() -> None:
    app = Celery("cfg")
    app.config_from_object("no_such_settings_module", silent=True)
    assert app.conf.task_default_queue == "celery"


def test_config_from_object_with_a_module_that_fails_to_import_names_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "unit_broken_settings.py").write_text("raise RuntimeError('half-written file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImproperlyConfigured, match=r"RuntimeError: half-written file"):
        Celery("cfg").config_from_object("unit_broken_settings")


def test_dotted_path_to_a_module_with_a_missing_dependency_shows_that_dependency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "unit_cfg_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text("import unit_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "unit_cfg_pkg", raising=False)
    with pytest.raises(
        ImproperlyConfigured, match=r"No module named 'unit_missing_dependency_xyz'"
    ):
        Celery("cfg").config_from_object("unit_cfg_pkg.settings")
