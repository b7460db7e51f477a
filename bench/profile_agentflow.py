"""Profile agentflow's sequential or queued path, database threads included.

cProfile sees only the event-loop thread, but most of the time per step is spent on the
database threads, so this runs one workload under py-spy (``pip install py-spy``), sampling
every thread while it holds the GIL, and then prints where the samples fall::

    python bench/profile_agentflow.py queued             # record and summarise
    python bench/profile_agentflow.py sequential --n 1500
    python bench/profile_agentflow.py --summarise out.raw  # summarise an earlier recording

Without py-spy on PATH (or next to this Python), use ``--no-record`` to just run the workload.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_LINE = re.compile(r":\d+\)")


def summarise(raw: Path, top: int) -> None:
    """Print samples per thread, then the functions with most samples (self and inclusive)."""
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        thread, *frames = stack.split(";")
        threads[re.sub(r"\(\d+\)", "", thread).strip()] += n
        if any("_find_and_load" in f for f in frames):
            continue  # imports, not the steady state
        frames = [_LINE.sub(")", f) for f in frames]
        total += n
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    print("samples by thread:")
    for name, n in threads.most_common():
        print(f"  {n:7d}  {name}")
    print(f"\ntop {top} by own samples (of {total}):")
    for f, n in own.most_common(top):
        print(f"  {n / total * 100:5.1f}%  {f}")
    # Inclusive: skip the roots every sample of a thread passes through.
    inner = [(f, n) for f, n in inclusive.most_common() if n < 0.5 * total]
    print(f"\ntop {top} by inclusive samples (frames under half of all samples):")
    for f, n in inner[:top]:
        print(f"  {n / total * 100:5.1f}%  {f}")
    print(f"\ntop {top} agentflow functions by inclusive samples:")
    ours = [(f, n) for f, n in inclusive.most_common() if "agentflow/" in f]
    for f, n in ours[:top]:
        print(f"  {n / total * 100:5.1f}%  {f}")


def run_workload(mode: str, n: int, url: str | None) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from engine_vs_dbos import agentflow_run

    folder = Path(tempfile.mkdtemp(prefix="afprofile_"))
    try:
        seconds = agentflow_run(
            url or f"sqlite:///{folder / 'bench.db'}",
            mode=mode,  # type: ignore[arg-type]
            n=n,
            steps=10,
            concurrency=50,
            warmup=5,
            sync="normal",
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{mode}: {n * 10 / seconds:.0f} steps/s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", nargs="?", choices=["sequential", "queued"], default="queued")
    p.add_argument("--n", type=int, default=None, help="workflows (1500 sequential, 2000 queued)")
    p.add_argument("--url", default=None, help="database URL (default: a fresh SQLite file)")
    p.add_argument("--out", default=None, help="py-spy raw output (default: a temp file)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--summarise", default=None, help="only summarise this raw py-spy file")
    p.add_argument("--no-record", action="store_true", help="run the workload without py-spy")
    args = p.parse_args(argv)

    if args.summarise:
        summarise(Path(args.summarise), args.top)
        return
    n = args.n or (1500 if args.mode == "sequential" else 2000)
    if args.no_record:
        run_workload(args.mode, n, args.url)
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy, or pass --no-record")
    out = Path(args.out or tempfile.mkstemp(prefix="afprofile_", suffix=".raw")[1])
    cmd = [spy, "record", "-r", "500", "--threads", "--gil", "-f", "raw", "-o", str(out), "--"]
    cmd += [sys.executable, __file__, args.mode, "--n", str(n), "--no-record"]
    if args.url:
        cmd += ["--url", args.url]
    subprocess.run(cmd, check=True)
    summarise(out, args.top)
    print(f"\nraw samples: {out}")


if __name__ == "__main__":
    main()
