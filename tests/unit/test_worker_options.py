"""``celeriac worker``'s Celery options: parsing, node-name expansions, pidfiles, errors,
the closest-option answer for a mistyped option, and ``multi``'s node-name syntax."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from celeriac import Celery
from celeriac.cli import main as cli_main
from celeriac.cli import nodenames
from celeriac.cli.daemon import Pidfile, parse_umask, read_pid, resolve_gid, resolve_uid
from celeriac.cli.multi_cmd import build_plan
from celeriac.errors import ConfigurationError
from celeriac.worker.autoscale import Autoscaler, parse_autoscale
from celeriac.worker.pools.prefork_slots import SlotTable
from celeriac.worker.worker import Worker

CELERY_WORKER_OPTIONS = [
    # every option `celery worker --help` lists (Celery 5.x)
    "--hostname", "--detach", "--statedb", "--loglevel", "--optimization",
    "--prefetch-multiplier", "--disable-prefetch", "--concurrency", "--pool", "--task-events",
    "--events", "--time-limit", "--soft-time-limit", "--max-tasks-per-child",
    "--pool-start-method", "--max-memory-per-child", "--purge", "--discard", "--queues",
    "--exclude-queues", "--include", "--without-gossip", "--without-mingle",
    "--without-heartbeat", "--heartbeat-interval", "--autoscale", "--beat",
    "--schedule-filename", "--schedule", "--scheduler", "--logfile", "--pidfile", "--uid",
    "--gid", "--umask", "--executable",
    "-n", "-D", "-S", "-l", "-O", "-c", "-P", "-E", "-Q", "-X", "-I", "-B", "-s", "-f",
]  # fmt: skip


@pytest.fixture(scope="module")
def cli() -> click.Group:
    cli_main._register_commands()
    return cli_main.cli


def invoke(cli: click.Group, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="celeriac")


# every option, by name
def test_worker_accepts_every_celery_worker_option(cli: click.Group) -> None:
    command = cli.commands["worker"]
    names = {n for p in command.params for n in (*p.opts, *p.secondary_opts)}
    assert set(CELERY_WORKER_OPTIONS) <= names


def test_group_takes_celerys_top_level_options(cli: click.Group) -> None:
    names = {n for p in cli.params for n in (*p.opts, *p.secondary_opts)}
    assert {"-A", "-b", "--result-backend", "--workdir", "--config", "-q", "-C"} <= names
    assert {"--no-color", "--quiet"} <= names


# node-name expansions
def test_hostname_expands_against_this_machine() -> None:
    assert nodenames.nodename("w1@%h", host="box.example.com") == "w1@box.example.com"
    assert nodenames.nodename("w1@%n.%d", host="box.example.com") == "w1@box.example.com"
    assert nodenames.nodename(None, host="box") == "celery@box"
    assert nodenames.nodename("w2", host="box") == "w2@box"


def test_logfile_and_pidfile_expansions_follow_celery() -> None:
    node = "w1@box.example.com"
    assert nodenames.node_format("%n.pid", node) == "w1.pid"
    assert nodenames.node_format("%h|%d|%p", node) == "box.example.com|example.com|" + node
    assert nodenames.node_format("%n%I.log", node) == "w1.log"  # the manager
    assert nodenames.node_format("%n%I.log", node, index=3) == "w1-3.log"
    assert nodenames.node_format("%n-%i.log", node) == "w1-0.log"
    assert nodenames.node_format("%n-%i.log", node, index=2) == "w1-2.log"
    assert nodenames.node_format("100%%-%n", node) == "100%-w1"
    assert nodenames.node_format("%n%I-%i.log", node, keep=True) == "w1%I-%i.log"


# --autoscale
@pytest.mark.parametrize(("text", "bounds"), [("10,3", (10, 3)), ("3,10", (10, 3)), ("4", (4, 0))])
def test_autoscale_parses_max_min(text: str, bounds: tuple[int, int]) -> None:
    assert parse_autoscale(text) == bounds


@pytest.mark.parametrize("text", ["", "a,b", "1,2,3", "-1,2", "0,0", "3;1"])
def test_autoscale_refuses_what_is_not_max_min(text: str) -> None:
    with pytest.raises(ConfigurationError, match="MAX,MIN"):
        parse_autoscale(text)


def test_autoscaler_grows_at_once_and_shrinks_after_keepalive() -> None:
    scaler = Autoscaler(5, 2, keepalive=10.0)
    assert scaler.target(procs=2, busy=2, queued=7, now=100.0) == 5  # capped at MAX
    assert scaler.target(procs=5, busy=1, queued=0, now=105.0) == 5  # within keepalive
    assert scaler.target(procs=5, busy=1, queued=0, now=111.0) == 2  # down to MIN
    assert scaler.target(procs=2, busy=2, queued=1, now=112.0) == 3  # load 3


def test_slot_table_ignores_empty_slots_for_prefetch() -> None:
    table = SlotTable(4)  # an autoscaled pool: 4 slots, 2 children
    try:
        for index in (0, 1):
            table.reset(index)
            table.set_waiting(index, False)
        assert table.siblings_consuming(0)  # slots 2 and 3 have no child
        assert not table.sibling_waiting(0)
        table.reset(2)
        assert not table.siblings_consuming(0)  # a starting child may take work
        table.vacate(2)
        assert table.siblings_consuming(0)
    finally:
        table.close()


# -O fair, -E, -B, -X, notes: what the Worker keeps and says
def test_fair_holds_no_more_than_free_slots(app: Celery) -> None:
    worker = Worker(app, pool="threads", concurrency=2, optimization="fair")
    assert worker.runtime.prefetch_multiplier == 1
    assert worker.runtime.prefetch_window_s == 0.0
    assert "fair" in worker.render_banner()


def test_events_are_on_in_the_banner_and_beat_options_kept(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(
        app,
        pool="solo",
        task_events=True,
        beat=True,
        schedule_filename="sched.db",
        notes=["--without-gossip: nothing to turn off"],
    )
    assert worker.task_events and app.conf.worker_send_task_events
    assert worker.beat and worker.schedule_filename == "sched.db"
    banner = worker.render_banner()
    assert "task events: ON" in banner
    assert "--without-gossip: nothing to turn off" in banner
    with caplog.at_level(logging.WARNING):
        worker._log_accepted_options()
    assert "task events" not in caplog.text  # they are sent: nothing to warn about


def test_autoscale_sets_bounds_for_prefork_and_warns_elsewhere(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(app, pool="prefork", autoscale=(6, 2))
    assert worker.runtime.autoscale == (6, 2)
    assert worker.runtime.concurrency == 2  # starts at MIN
    assert worker.runtime.prefetch_multiplier == 1  # waiting work stays countable
    assert "{min=2, max=6}" in worker.render_banner()
    with caplog.at_level(logging.WARNING):
        threads = Worker(app, pool="threads", concurrency=3, autoscale=(6, 2))
    assert threads.runtime.autoscale is None and threads.runtime.concurrency == 3
    assert "--autoscale works with the prefork pool only" in caplog.text


def test_exclude_queues(app: Celery) -> None:
    worker = Worker(app, pool="solo", queues=["a", "b", "c"], exclude_queues=["b"])
    assert worker.runtime.queues == ["a", "c"]
    with pytest.raises(ConfigurationError, match="leaves no queue"):
        Worker(app, pool="solo", queues=["a"], exclude_queues=["a"])


# pidfiles
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_pidfile_is_created_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "w.pid"
    pidfile = Pidfile(str(path))
    pidfile.check()
    pidfile.acquire()
    assert read_pid(str(path)) == os.getpid()
    assert list(tmp_path.iterdir()) == [path]  # the staged copy is gone
    with pytest.raises(ConfigurationError, match="cannot create the pidfile"):
        Pidfile(str(tmp_path / "no-dir" / "w.pid")).acquire()
    pidfile.release()
    assert not path.exists()


def test_live_pidfile_refuses_and_stale_one_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "w.pid"
    path.write_text(f"{os.getppid()}\n")  # a live process that is not us
    with pytest.raises(ConfigurationError, match="still running"):
        Pidfile(str(path)).check()
    with pytest.raises(ConfigurationError, match="still running"):
        Pidfile(str(path)).acquire()
    path.write_text(f"{_dead_pid()}\n")
    pidfile = Pidfile(str(path))
    pidfile.acquire()
    assert read_pid(str(path)) == os.getpid()
    pidfile.release()


def test_umask_uid_gid_parsing() -> None:
    assert parse_umask("0022") == 0o22
    assert parse_umask("077") == 0o77
    with pytest.raises(ConfigurationError, match="octal"):
        parse_umask("999")
    assert resolve_uid("0") == 0
    assert resolve_uid("root") == 0
    assert resolve_gid("0") == 0
    with pytest.raises(ConfigurationError, match="no such user"):
        resolve_uid("no-such-user-here")
    with pytest.raises(ConfigurationError, match="no such group"):
        resolve_gid("no-such-group-here")


# bad input on the command line: a clear line and an exit code, no traceback
@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--autoscale=ten,three"], 2, "is not MAX,MIN"),
        (["--umask=0999"], 2, "is not an octal file mode mask"),
        (["--uid=no-such-user-here"], 1, "no such user on this machine"),
        (["--gid=no-such-group-here"], 1, "no such group on this machine"),
        (["--pidfile=/no/such/dir/%n.pid"], 1, "the directory /no/such/dir does not exist"),
        (["--logfile=/no/such/dir/%n%I.log"], 1, "the directory /no/such/dir does not exist"),
        (["-l", "chatty"], 2, "unknown log level"),
        (["-O", "fast"], 2, "'fast' is not one of 'default', 'fair'"),
    ],
)
def test_bad_worker_options_exit_with_a_clear_line(
    cli: click.Group, args: list[str], code: int, text: str
) -> None:
    result = invoke(cli, "worker", *args)
    assert result.exit_code == code, result.output
    assert text in result.output
    assert "Traceback" not in result.output


def test_pidfile_or_logfile_under_a_file_is_refused(cli: click.Group, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    for option in ("--pidfile", "--logfile"):
        result = invoke(cli, "worker", f"{option}={plain}/%n.x")
        assert result.exit_code == 1
        assert f"{option} {plain}/" in result.output and "does not exist" in result.output


def test_live_pidfile_on_the_command_line(cli: click.Group, tmp_path: Path) -> None:
    host = nodenames.gethostname()
    (tmp_path / "w9.pid").write_text(f"{os.getppid()}\n")
    result = invoke(cli, "worker", "-n", "w9@%h", f"--pidfile={tmp_path}/%n.pid")
    assert result.exit_code == 1
    assert f"{tmp_path}/w9.pid belongs to process {os.getppid()}" in result.output
    assert host  # the node's name part named the file


# a mistyped option: the closest real one, for every command
@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (["worker", "--without-gosip"], "--without-gossip"),
        (["worker", "--pidfle=x"], "--pidfile"),
        (["worker", "--autoscal=3,1"], "--autoscale"),
        (["worker", "--exclude-queue", "a"], "--exclude-queues"),
        (["worker", "--concurency=2"], "--concurrency"),
        (["--confg=x", "report"], "--config"),
        (["purge", "--exclude", "a"], "--exclude-queues"),
        (["call", "--routingkey=x", "t"], "--routing-key"),
    ],
)
def test_unknown_option_names_the_closest(
    cli: click.Group, args: list[str], suggestion: str
) -> None:
    result = invoke(cli, *args)
    assert result.exit_code == 2
    assert "No such option" in result.output
    assert suggestion in result.output.split("No such option", 1)[1]


def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.extend(_leaf_commands(command, (*path, name)))
        else:
            found.append((*path, name))
    return found


def test_every_command_answers_an_unknown_option_with_a_real_one(cli: click.Group) -> None:
    leaves = [p for p in _leaf_commands(cli) if p != ("multi",)]  # multi: tested above
    assert ("worker",) in leaves and len(leaves) >= 8
    for path in leaves:
        command: click.Command = cli
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        result = invoke(cli, *path, "--zzz-not-an-option")
        assert result.exit_code == 2, (path, result.output)
        assert "Did you mean" in result.output, (path, result.output)
        suggested = result.output.split("Did you mean", 1)[1]
        params = command.get_params(click.Context(command))
        real = {n for p in params for n in (*p.opts, *p.secondary_opts)}
        assert any(f"'{opt}'" in suggested for opt in real), (path, result.output)


# multi's node-name syntax
def test_multi_names_from_a_count_and_from_names() -> None:
    host = nodenames.gethostname()
    assert [n.name for n in build_plan(["3"]).nodes] == [f"celery{i}@{host}" for i in (1, 2, 3)]
    plan = build_plan(["2", "--range-prefix", "worker"])
    assert [n.name for n in plan.nodes] == [f"worker1@{host}", f"worker2@{host}"]
    plan = build_plan(["w1", "w2@example.com"])
    assert [n.name for n in plan.nodes] == [f"w1@{host}", "w2@example.com"]


def test_multi_per_node_options_and_defaults() -> None:
    plan = build_plan(
        ["3", "-A", "proj", "-c", "2", "-c:1", "4", "-Q:2-3", "images", "-l", "info", "-E"]
    )
    one, two, three = (plan.command(n) for n in plan.nodes)
    assert one[:6] == [sys.executable, "-m", "celeriac", "-A", "proj", "worker"]
    assert "--detach" in one and "-E" in one
    assert one[one.index("-c") + 1] == "4"
    assert two[two.index("-c") + 1] == "2"
    assert "-Q" not in one and three[three.index("-Q") + 1] == "images"
    assert "--pidfile=celery1.pid" in one and "--logfile=celery1%I.log" in one


def test_multi_expands_node_names_in_paths(tmp_path: Path) -> None:
    plan = build_plan(
        ["w1", "w2", f"--pidfile={tmp_path}/%n.pid", f"--logfile={tmp_path}/%n%I.log"]
    )
    w1 = plan.nodes[0]
    assert w1.pidfile == f"{tmp_path}/w1.pid"
    assert f"--logfile={tmp_path}/w1%I.log" in plan.command(w1)


def test_multi_show_and_unknown_action(cli: click.Group) -> None:
    result = invoke(cli, "-A", "proj", "multi", "show", "w1", "w2", "-c", "3")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and all("--app=proj worker --detach" in line for line in lines)
    result = invoke(cli, "multi", "begin", "w1")
    assert result.exit_code == 2 and "unknown multi command 'begin'" in result.output


def test_multi_stop_with_no_pidfile_says_down(cli: click.Group, tmp_path: Path) -> None:
    result = invoke(cli, "multi", "stop", "w1", f"--pidfile={tmp_path}/%n.pid")
    assert result.exit_code == 0
    assert "w1@" in result.output and "DOWN" in result.output


# report, call, purge
def test_report_masks_passwords(cli: click.Group, memory_url: str) -> None:
    result = invoke(cli, "-b", "redis://:hunter2@127.0.0.1:1/0", "report")
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert "software -> celeriac" in result.output


def test_call_takes_eta_exchange_and_routing_key(cli: click.Group, memory_url: str) -> None:
    result = invoke(cli, "-b", memory_url, "call", "t.x", "--eta", "yesterday")
    assert result.exit_code == 2 and "not an ISO 8601 time" in result.output
    result = invoke(
        cli,
        "-b",
        memory_url,
        "--result-backend",
        memory_url,
        "call",
        "t.x",
        "--eta",
        "2030-01-01T00:00:00",
        "--expires",
        "2031-01-01T00:00:00+00:00",
        "--queue",
        "q1",
        "--exchange",
        "q1",
        "--routing-key",
        "q1",
    )
    assert result.exit_code == 0, result.output


def test_purge_excludes_queues(cli: click.Group, memory_url: str) -> None:
    app = Celery("p", broker=memory_url, backend=memory_url)
    for queue in ("a", "b"):
        app.send_task("t.x", queue=queue)
    result = invoke(cli, "-b", memory_url, "purge", "-Q", "a,b", "-X", "b", "-f")
    assert result.exit_code == 0, result.output
    assert "purged 1 message(s) from a" in result.output
    assert app.broker.queue_length("b") == 1
    result = invoke(cli, "-b", memory_url, "purge", "-Q", "b", "-X", "b", "-f")
    assert result.exit_code == 2 and "leaves no queue" in result.output


# the options reach the Worker: run the command with Worker.start recording, not running
@pytest.fixture
def started_workers(monkeypatch: pytest.MonkeyPatch) -> list[Worker]:
    from celeriac.cli import worker_cmd

    seen: list[Worker] = []

    def record(self: Worker) -> int:
        seen.append(self)
        return 0

    monkeypatch.setattr(Worker, "start", record)
    monkeypatch.setattr(worker_cmd, "_setup_logging", lambda *args, **kwargs: None)
    return seen


def test_worker_options_reach_the_worker(
    cli: click.Group, memory_url: str, started_workers: list[Worker]
) -> None:
    app = Celery("p", broker=memory_url, backend=memory_url)
    app.send_task("t.x", queue="a")
    result = invoke(
        cli, "-q", "-b", memory_url, "worker", "-P", "threads", "-c", "2",
        "-Q", "a,b,c", "-X", "c", "-I", "json,csv", "--heartbeat-interval", "0.5",
        "--disable-prefetch", "--purge", "-E", "-B", "-s", "beat.db", "--scheduler", "x.Y",
        "--without-heartbeat", "--pool-start-method", "spawn", "-n", "w7@%h",
        "--statedb=/tmp/%n.state",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Discarded 1 message(s) from a, b." in result.output
    (worker,) = started_workers
    rt = worker.runtime
    assert rt.queues == ["a", "b"] and rt.concurrency == 2
    assert worker.statedb_path == "/tmp/w7.state"
    assert rt.nodename == f"w7@{nodenames.gethostname()}"
    assert rt.prefetch_multiplier == 1 and worker.optimization == "fair"
    assert worker.banner is False  # -q
    assert worker.task_events and worker.beat
    assert (worker.schedule_filename, worker.scheduler) == ("beat.db", "x.Y")
    assert {"json", "csv"} <= set(worker.app.conf.include)
    assert worker.app.conf.worker_heartbeat_interval == 0.5
    assert any(note.startswith("--without-heartbeat") for note in worker.notes)
    assert any(note.startswith("--pool-start-method=spawn") for note in worker.notes)


def test_heartbeat_interval_must_leave_room_for_the_dead_after(
    cli: click.Group, memory_url: str, started_workers: list[Worker]
) -> None:
    result = invoke(cli, "-b", memory_url, "worker", "-P", "solo", "--heartbeat-interval", "10")
    assert result.exit_code == 2
    assert "worker_dead_after" in result.output
    assert started_workers == []


def test_workdir_and_config_at_the_top(
    cli: click.Group, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    (project / "myconf_for_cli.py").write_text(
        "broker_url = 'memory://from-config'\nresult_backend = 'memory://from-config'\n"
    )
    result = invoke(cli, "--workdir", str(project), "--config", "myconf_for_cli", "report")
    assert result.exit_code == 0, result.output
    assert "transport:memory://from-config" in result.output
    assert Path.cwd() == project
    result = invoke(cli, "--config", "no_such_conf_module_here", "report")
    assert result.exit_code == 1
    assert "--config no_such_conf_module_here: cannot load that settings module" in result.output


def test_shell_preloads_the_app_and_its_tasks(
    cli: click.Group, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_url: str
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shellproj.py").write_text(
        "from celeriac import Celery\n"
        f"app = Celery('shellproj', broker={memory_url!r}, backend={memory_url!r})\n"
        "@app.task(name='shellproj.add')\n"
        "def add(x, y):\n    return x + y\n"
    )
    code = "print(app.main, celery is app, add.name, add(2, 3), Celery is celeriac.Celery, chain)"
    result = invoke(cli, "-A", "shellproj", "shell", "-c", code)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("shellproj True shellproj.add 5 True <class")


def test_drop_privileges_becomes_the_user_or_says_only_root_may() -> None:
    from celeriac.cli.daemon import drop_privileges

    if os.getuid() != 0:
        with pytest.raises(ConfigurationError, match="only root may change user or group"):
            drop_privileges(65534, 65534)
        return
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child switches for good, reports and leaves
        code = 1
        try:
            drop_privileges(resolve_uid("nobody"), None)  # the user's own group by default
            os.write(write_fd, f"{os.getuid()} {os.geteuid()} {os.getgid()}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    reported = os.read(read_fd, 100).decode()
    os.close(read_fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    nobody = __import__("pwd").getpwnam("nobody")
    assert reported == f"{nobody.pw_uid} {nobody.pw_uid} {nobody.pw_gid}"


def test_multi_as_celerys_systemd_unit_and_init_script_call_it(cli: click.Group) -> None:
    host = nodenames.gethostname()
    # ExecStart of the unit in Celery's "Daemonization" page, with celeriac for celery
    result = invoke(
        cli, "-A", "proj", "multi", "show", "w1", "w2", "w3",
        "--pidfile=/var/run/celery/%n.pid", "--logfile=/var/log/celery/%n%I.log",
        "--loglevel=INFO", "--time-limit=300", "--concurrency=8",
        "--cmd=-m celery worker --detach",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3
    assert lines[1].endswith(
        f"-m celeriac --app=proj worker --detach --hostname=w2@{host} "
        "--pidfile=/var/run/celery/w2.pid --logfile=/var/log/celery/w2%I.log "
        "--loglevel=INFO --time-limit=300 --concurrency=8"
    )
    # a name after the options, as people write it: `multi start -A proj worker -l info`
    plan = build_plan(["-A", "proj", "worker", "-l", "info", "-E"])
    assert [n.name for n in plan.nodes] == [f"worker@{host}"]
    assert plan.global_args == ["-A", "proj"]


def test_prefork_pool_grow_and_shrink_within_its_slots(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    from celeriac.worker.pools.prefork import PreforkPool

    worker = Worker(app, pool="prefork", autoscale=(4, 1))
    pool = PreforkPool(worker.runtime)
    try:
        assert pool.table.count == 4  # one slot per child there may ever be
        assert pool.pool_grow(2) == 3
        with caplog.at_level(logging.WARNING):
            assert pool.pool_grow(5) == 4  # no more than the slots
        assert "this pool has 4 slots" in caplog.text
        assert pool.pool_shrink(2) == 2
        assert pool.pool_shrink(10) == 1  # never fewer than one
    finally:
        pool.table.close()


def test_multi_answers_a_mistyped_worker_option_before_starting(cli: click.Group) -> None:
    result = invoke(cli, "multi", "start", "w1", "--concurency", "3")
    assert result.exit_code == 2
    assert "No such worker option '--concurency'. Did you mean '--concurrency'?" in result.output
    result = invoke(cli, "multi", "start", "w1", "-c:w1", "3", "--without-gosip")
    assert "Did you mean '--without-gossip'?" in result.output


def test_report_masks_secret_settings() -> None:
    from celeriac.cli.report_cmd import MASK, masked

    options = {"password": "s3cret", "visibility_timeout": 10, "api_key": "k"}
    assert masked("broker_transport_options", options) == {
        "password": MASK,
        "visibility_timeout": 10,
        "api_key": MASK,
    }
    assert "pw" not in str(masked("result_backend", "redis://user:pw@127.0.0.1:1/0"))
    assert masked("worker_concurrency", 4) == 4
    assert masked("secret_key", "") == ""  # nothing to hide


def test_shell_ipython_without_ipython_says_how_to_get_it(
    cli: click.Group, memory_url: str
) -> None:
    import importlib.util

    if importlib.util.find_spec("IPython") is None:
        result = invoke(cli, "-b", memory_url, "shell", "--ipython")
        assert result.exit_code == 1
        assert "--ipython: IPython is not installed; pip install ipython" in result.output
    else:  # with IPython installed, -c still runs plain code without a prompt
        result = invoke(cli, "-b", memory_url, "shell", "--ipython", "-c", "print(app)")
        assert result.exit_code == 0
