"""``celeriac demo``: the seed's process drawings and comparison table, measured live.

The seed (a walkthrough of where a Celery task runs under each pool) draws process trees
and a comparison table. This package starts a real worker per pool on the seed's project,
sends the seed's tasks, and prints the same drawings and table filled with what it
measured, so a reader can check each claim instead of trusting it.

Modules, in the order a run uses them:

- ``seed_app`` / ``seed_tasks``: the seed's app and tasks, shipped inside the package
  because an installed wheel has no ``examples/`` directory;
- ``plan``: which tasks each pool gets (the seed's tasks, a CPU batch, an I/O batch);
- ``workerproc``: one worker subprocess, started and always stopped by PID;
- ``observe``: live facts from outside the worker (psutil, Redis ``CLIENT LIST``,
  SQLite file handles);
- ``runner``: drives one pool after another, with a live progress bar;
- ``measure``: turns the recorded execution places into facts (pure functions);
- ``checks``: compares those facts with the seed's table (pure functions);
- ``render``: the trees and the table, with ``rich``.
"""
