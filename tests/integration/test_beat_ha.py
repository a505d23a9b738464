"""Three real beat processes on one broker, one SIGKILLed mid-run: every slot of the window
is sent exactly once and run exactly once (counted by task id), on Redis and on SQLite."""

from __future__ import annotations

from pathlib import Path

from tests.support.beat_ha import HaReport, run_beat_ha


def _assert_exactly_once(report: HaReport) -> None:
    report_text = report.summary() + "\n" + report.duplicate_lines()
    ids = report.expected_ids()
    assert len(ids) >= 6, report_text
    assert [report.sends[i] for i in ids] == [1] * len(ids), report_text
    assert [report.runs[i] for i in ids] == [1] * len(ids), report_text
    assert max(report.sends.values()) == 1, report_text
    assert max(report.runs.values()) == 1, report_text


def test_three_beats_on_redis_one_killed_send_and_run_each_slot_once(
    redis_url: str, backend_url: str, tmp_path: Path
) -> None:
    report = run_beat_ha(redis_url, backend_url, tmp_path, window_s=8, kill_after_s=2)
    print(report.summary())
    _assert_exactly_once(report)


def test_three_beats_on_sqlite_one_killed_send_and_run_each_slot_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.sqlite3'}"
    report = run_beat_ha(url, url, tmp_path, window_s=6, kill_after_s=2)
    print(report.summary())
    _assert_exactly_once(report)
