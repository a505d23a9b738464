"""Create the virtualenvs for peers whose pins clash with celeriac's environment.

arq 0.28 requires redis-py < 6 while celeriac's environment has a newer one, so arq gets its
own ``.venv-bench-arq``. Every other peer installs into the project's environment through the
``bench`` extra: ``pip install -e '.[bench]'``.

Run once: ``python bench/setup_envs.py`` (``--force`` recreates, ``--only arq`` picks).
The runner uses these environments when present and reports "not installed" otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# peer -> pip requirements for its own environment (hiredis for every peer: same parser as ours)
ENVS: dict[str, list[str]] = {
    "arq": ["arq==0.28.*", "redis[hiredis]>=5,<6"],
}


def env_dir(peer: str) -> Path:
    return ROOT / f".venv-bench-{peer}"


def env_python(peer: str) -> Path:
    return env_dir(peer) / "bin" / "python"


def create(peer: str, force: bool) -> None:
    target = env_dir(peer)
    if force and target.exists():
        shutil.rmtree(target)
    if not env_python(peer).exists():
        print(f"creating {target}")
        venv.EnvBuilder(with_pip=True, clear=True).create(target)
    cmd = [str(env_python(peer)), "-m", "pip", "install", "-q", *ENVS[peer]]
    print(" ".join(cmd))
    subprocess.run(cmd, check=True)
    version = subprocess.run(
        [
            str(env_python(peer)),
            "-c",
            f"import importlib.metadata as m; print(m.version({peer!r}))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"{peer} {version} ready in {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(ENVS), help="peer to set up")
    parser.add_argument("--force", action="store_true", help="recreate the environment")
    args = parser.parse_args(argv)
    for peer in args.only or sorted(ENVS):
        create(peer, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
