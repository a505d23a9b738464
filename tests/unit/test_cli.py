"""The ``celeriac`` command: help for every sub-command, and a readable ``-A`` failure."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from celeriac.brokers.memory import store_for
from celeriac.cli import main as cli_main

SUBCOMMANDS = ["worker", "call", "result", "purge"]


@pytest.fixture(scope="module")
def cli() -> click.Group:
    cli_main._register_commands()  # what `celeriac` does before parsing
    return cli_main.cli


@pytest.fixture
def in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory; sys.path (which -A extends with the cwd) is restored after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


def invoke(cli: click.Group, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="celeriac")


def test_top_level_help_lists_every_sub_command(cli: click.Group) -> None:
    result = invoke(cli, "--help")
    assert result.exit_code == 0
    assert all(f"  {name}" in result.output for name in SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_sub_command_help_exits_zero_with_usage(cli: click.Group, name: str) -> None:
    result = invoke(cli, name, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: celeriac {name}" in result.output


def test_worker_help_shows_celerys_flags(cli: click.Group) -> None:
    output = invoke(cli, "worker", "--help").output
    for flag in (
        "-P, --pool",
        "-c, --concurrency",
        "-Q, --queues",
        "-n, --hostname",
        "-l, --loglevel",
    ):
        assert flag in output


def test_call_help_shows_arguments_and_timing_options(cli: click.Group) -> None:
    output = invoke(cli, "call", "--help").output
    for flag in ("--args", "--kwargs", "--countdown", "--expires", "--queue"):
        assert flag in output


def test_version_option_prints_the_version(cli: click.Group) -> None:
    result = invoke(cli, "--version")
    assert (result.exit_code, "celeriac" in result.output) == (0, True)


def _write(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.py").write_text(text)


def _module_name() -> str:
    return f"unit_cli_app_{uuid.uuid4().hex[:8]}"


def test_app_module_with_a_missing_import_shows_that_import_error(
    cli: click.Group, in_tmp_dir: Path
) -> None:
    name = _module_name()
    _write(in_tmp_dir, name, "import unit_dependency_not_installed\n")
    result = invoke(cli, "-A", name, "result", "some-id")
    assert result.exit_code == 1
    assert "No module named 'unit_dependency_not_installed'" in result.output


def test_app_module_that_fails_to_import_shows_the_path_searched(
    cli: click.Group, in_tmp_dir: Path
) -> None:
    name = _module_name()
    _write(in_tmp_dir, name, "import unit_dependency_not_installed\n")
    result = invoke(cli, "-A", name, "result", "some-id")
    assert "searched:" in result.output
    assert f"  {in_tmp_dir}" in result.output


def test_app_module_that_does_not_exist_says_so_and_shows_the_path_searched(
    cli: click.Group, in_tmp_dir: Path
) -> None:
    result = invoke(cli, "-A", "unit_no_such_app_module", "result", "some-id")
    assert result.exit_code == 1
    assert "No module named 'unit_no_such_app_module'" in result.output
    assert f"  {in_tmp_dir}" in result.output


def test_app_module_raising_at_import_shows_the_error_not_a_crash(
    cli: click.Group, in_tmp_dir: Path
) -> None:
    name = _module_name()
    _write(in_tmp_dir, name, "raise RuntimeError('settings half written')\n")
    result = invoke(cli, "-A", name, "result", "some-id")
    assert result.exit_code == 1
    assert "RuntimeError: settings half written" in result.output


def test_app_module_raising_at_import_shows_the_line_that_raised(
    cli: click.Group, in_tmp_dir: Path
) -> None:
    name = _module_name()
    _write(in_tmp_dir, name, "value = 1\nraise RuntimeError('settings half written')\n")
    result = invoke(cli, "-A", name, "result", "some-id")
    assert f'{name}.py", line 2' in result.output


def test_app_module_with_a_syntax_error_shows_the_file_and_line(
    cli: click.Group, in_tmp_dir: Path
) -> None:
    name = _module_name()
    _write(in_tmp_dir, name, "app = (\n")
    result = invoke(cli, "-A", name, "result", "some-id")
    assert result.exit_code == 1
    assert "SyntaxError" in result.output
    assert f"{name}.py" in result.output


def test_dotted_app_path_in_a_package_shows_the_real_import_error(
    cli: click.Group, in_tmp_dir: Path
) -> None:
    package = in_tmp_dir / _module_name()
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "celery_app.py").write_text("import unit_dependency_not_installed\n")
    result = invoke(cli, "-A", f"{package.name}.celery_app", "result", "some-id")
    assert "No module named 'unit_dependency_not_installed'" in result.output


def test_app_module_without_an_app_says_what_to_point_at(
    cli: click.Group, in_tmp_dir: Path
) -> None:
    name = _module_name()
    _write(in_tmp_dir, name, "value = 1\n")
    result = invoke(cli, "-A", name, "result", "some-id")
    assert result.exit_code == 1
    assert "module:attr" in result.output


def test_call_prints_the_task_id_of_the_sent_message(cli: click.Group) -> None:
    url = f"memory://cli-{uuid.uuid4().hex}"
    result = invoke(cli, "-b", url, "call", "proj.add", "--args", "[2, 3]")
    assert result.exit_code == 0, result.output
    (queued,) = store_for(url).queues["celery"]
    assert result.output.strip().encode() in queued


def test_call_with_arguments_that_are_not_json_is_a_usage_error(cli: click.Group) -> None:
    result = invoke(cli, "-b", "memory://cli-bad", "call", "proj.add", "--args", "[2, ")
    assert result.exit_code == 2
    assert "--args" in result.output


def test_result_of_an_unknown_id_prints_pending(cli: click.Group) -> None:
    url = f"memory://cli-{uuid.uuid4().hex}"
    result = invoke(cli, "-b", url, "--result-backend", url, "result", "no-such-id")
    assert result.exit_code == 0, result.output
    assert "state: PENDING" in result.output
