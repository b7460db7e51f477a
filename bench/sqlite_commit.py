"""Raw sqlite3 single-row commit rate on this disk, to put agentflow's per-step cost next to.

One connection, one ``BEGIN IMMEDIATE; INSERT one row; COMMIT`` per iteration (a journal
write of a step is one such commit), in WAL mode with ``synchronous=FULL`` and ``NORMAL``,
and with the rollback journal (``journal_mode=DELETE, synchronous=FULL``: SQLite's
default, which DBOS uses). Each mode runs ``--rounds`` rounds on one file after a warm-up
round; the disk here is noisy, so the median, best and worst rounds are all reported.

Run ``python bench/sqlite_commit.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

MODES = [("wal", "full"), ("wal", "normal"), ("delete", "full")]
ROW = "x" * 200  # about the size of a journaled step row


def commit_rounds(path: Path, journal: str, sync: str, n: int, rounds: int) -> list[float]:
    """Commits per second of each round."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(f"PRAGMA journal_mode={journal}")
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, run TEXT, seq INT, output TEXT)")
        rates = []
        for r in range(rounds + 1):
            started = time.perf_counter()
            for i in range(n):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO t (run, seq, output) VALUES (?, ?, ?)", ("r", i, ROW))
                conn.execute("COMMIT")
            if r:  # round 0 warms up: file growth, page cache, WAL wrap-around
                rates.append(n / (time.perf_counter() - started))
        return rates


def fsync_rate(folder: Path, n: int) -> float:
    """Plain write + fdatasync of 4 KiB at one offset, for scale."""
    path = folder / "fsync.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        block = b"\0" * 4096
        started = time.perf_counter()
        for _ in range(n):
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
        return n / (time.perf_counter() - started)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="commits per round (default 1000)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per mode (default 5)")
    p.add_argument("--dir", default=None, help="directory on the disk to test (default: temp)")
    args = p.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="afcommit_", dir=args.dir))
    print(f"sqlite {sqlite3.sqlite_version}, {args.n} commits x {args.rounds} rounds in {folder}")
    try:
        print(f"{'mode':28} {'median':>10} {'best':>10} {'worst':>10}   us/commit (median)")
        for journal, sync in MODES:
            rates = commit_rounds(
                folder / f"{journal}_{sync}.db", journal, sync, args.n, args.rounds
            )
            med = statistics.median(rates)
            print(
                f"{f'journal={journal} sync={sync}':28} {med:10.0f} {max(rates):10.0f} "
                f"{min(rates):10.0f}   {1e6 / med:8.1f}"
            )
        rate = fsync_rate(folder, max(200, args.n // 4))
        print(f"{'write 4 KiB + fdatasync':28} {rate:10.0f} {'':>10} {'':>10}   {1e6 / rate:8.1f}")
        print("(figures are commits per second)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
