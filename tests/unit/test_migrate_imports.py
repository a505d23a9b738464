"""``celeriac migrate-imports``: celery imports become celeriac imports with comments and
layout kept, a diff unless ``--write``, unmappable names left and listed, unparsable files
never written."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from celeriac.cli import main as cli_main
from celeriac.migrate import migrate_source
from tests.unit.test_import_paths import CELERY_MODULE

BEFORE = '''\
"""Tasks of the shop."""
import os, celery  # the framework, kept in one line
import celery.schedules
import celery as C
from celery import (
    Celery,   # the app class
    shared_task,
)
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from .celery import app as local_app  # a project module, not the framework

logger = get_task_logger(__name__)
APP_REF = "celery.tasks.add"  # strings are left alone


@celery.shared_task(bind=True)
def add(self, x, y):
    celery = "a local name"  # shadows the module here: not renamed
    return celery, x + y


every_5 = celery.schedules.crontab(minute='*/5')
other = C.shared_task
'''

AFTER = '''\
"""Tasks of the shop."""
import os, celeriac  # the framework, kept in one line
import celeriac.schedules
import celeriac as C
from celeriac import (
    Celery,   # the app class
    shared_task,
)
from celeriac.exceptions import SoftTimeLimitExceeded
from celeriac.utils.log import get_task_logger
from .celery import app as local_app  # a project module, not the framework

logger = get_task_logger(__name__)
APP_REF = "celery.tasks.add"  # strings are left alone


@celeriac.shared_task(bind=True)
def add(self, x, y):
    celery = "a local name"  # shadows the module here: not renamed
    return celery, x + y


every_5 = celeriac.schedules.crontab(minute='*/5')
other = C.shared_task
'''


@pytest.fixture(scope="module")
def cli() -> click.Group:
    cli_main._register_commands()
    return cli_main.cli


def invoke(cli: click.Group, *args: str) -> Result:
    return CliRunner().invoke(cli, ["migrate-imports", *args], prog_name="celeriac")


def test_write_rewrites_every_import_form_keeping_comments_and_layout(
    cli: click.Group, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.py"
    tasks.write_text(BEFORE)
    result = invoke(cli, "--write", str(tasks))
    assert result.exit_code == 0, result.output
    assert tasks.read_text() == AFTER
    assert "rewrote 1 file(s)" in result.stderr


def test_without_write_prints_a_unified_diff_and_leaves_the_file(
    cli: click.Group, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.py"
    tasks.write_text(BEFORE)
    result = invoke(cli, str(tasks))
    assert result.exit_code == 0
    assert tasks.read_text() == BEFORE
    assert "--- a/" in result.stdout and "+++ b/" in result.stdout
    assert "-from celery.exceptions import SoftTimeLimitExceeded\n" in result.stdout
    assert "+from celeriac.exceptions import SoftTimeLimitExceeded\n" in result.stdout
    assert "run again with --write to save" in result.stderr


def test_running_again_changes_nothing(cli: click.Group, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.py"
    tasks.write_text(BEFORE)
    invoke(cli, "--write", str(tasks))
    again = invoke(cli, "--write", str(tasks))
    assert again.exit_code == 0
    assert again.stdout == ""
    assert "rewrote 0 file(s)" in again.stderr
    assert tasks.read_text() == AFTER


def test_names_celeriac_does_not_provide_are_left_and_listed_with_the_reason(
    cli: click.Group, tmp_path: Path
) -> None:
    source = (
        "from celery import shared_task\n"
        "from celery.exceptions import SoftTimeLimitExceeded, CeleryCommandException\n"
        "from celery.backends.database import DatabaseBackend\n"
        "import celery\n"
        "x = celery.no_such_thing\n"
    )
    tasks = tmp_path / "tasks.py"
    tasks.write_text(source)
    result = invoke(cli, "--write", str(tasks))
    assert result.exit_code == 0
    assert tasks.read_text() == source.replace(
        "from celery import shared_task", "from celeriac import shared_task"
    )
    listed = result.stderr
    assert (
        f"{tasks}:2: not migrated: celery.exceptions.CeleryCommandException: "
        f"celeriac.exceptions has no name 'CeleryCommandException'"
    ) in listed
    assert (
        f"{tasks}:3: not migrated: celery.backends.database: "
        f"celeriac has no module celeriac.backends.database"
    ) in listed
    assert f"{tasks}:5: not migrated: celery.no_such_thing: celeriac has no name" in listed
    assert "3 import(s) left as celery" in listed


def test_a_file_that_does_not_parse_is_never_written_and_fails_the_run(
    cli: click.Group, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.py"
    broken_source = b"from celery import shared_task\ndef oops(:\n    pass\n"
    broken.write_bytes(broken_source)
    good = tmp_path / "good.py"
    good.write_text("from celery import shared_task\n")
    result = invoke(cli, "--write", str(tmp_path))
    assert result.exit_code == 1
    assert broken.read_bytes() == broken_source
    assert good.read_text() == "from celeriac import shared_task\n"
    assert f"{broken}: cannot parse it, left unchanged" in result.stderr
    assert "1 file(s) could not be read or parsed and were not touched" in result.stderr


def test_a_missing_path_is_reported_and_fails_the_run(cli: click.Group, tmp_path: Path) -> None:
    result = invoke(cli, str(tmp_path / "nope.py"))
    assert result.exit_code == 1
    assert "cannot read it" in result.stderr


def test_directories_are_walked_skipping_virtualenvs_and_hidden_folders(
    cli: click.Group, tmp_path: Path
) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "tasks.py").write_text("import celery\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "dep.py").write_text("import celery\n")
    (tmp_path / "env2").mkdir()
    (tmp_path / "env2" / "pyvenv.cfg").write_text("home = /usr\n")
    (tmp_path / "env2" / "dep.py").write_text("import celery\n")
    (tmp_path / "notes.txt").write_text("import celery\n")
    result = invoke(cli, "--write", str(tmp_path))
    assert result.exit_code == 0
    assert (tmp_path / "proj" / "tasks.py").read_text() == "import celeriac\n"
    for untouched in (".venv/lib/dep.py", "env2/dep.py", "notes.txt"):
        assert (tmp_path / untouched).read_text() == "import celery\n"


def test_the_celery_style_module_migrates_to_the_version_that_runs() -> None:
    migrated = migrate_source(CELERY_MODULE.encode(), Path("celery_style_tasks.py"))
    assert migrated.unmapped == []
    assert migrated.new == re.sub(r"\bcelery\b", "celeriac", CELERY_MODULE)


def test_a_declared_source_encoding_is_kept() -> None:
    source = "# -*- coding: latin-1 -*-\nfrom celery import shared_task  # café\n"
    migrated = migrate_source(source.encode("latin-1"), Path("legacy.py"))
    assert migrated.encoded == source.replace("from celery", "from celeriac").encode("latin-1")
