"""A worker process for the crash-recovery tests, and the harness that runs such processes.

Run as ``python -m tests.apps.crash_app DATABASE_URL [--lease S] [--concurrency N] ...``
(working directory: the repository root). The process runs one worker for the ``crash``
workflow and reports on stdout, one line each:

* ``READY <pid> <worker id>`` once the worker is claiming runs;
* ``STOPPING <signal>`` after SIGTERM/SIGINT, once ``worker.stop()`` has been called;
* ``STOPPED`` when the worker has returned (it then closes the engine and exits 0).

The ``crash`` workflow takes ``CrashJob``: ``steps`` steps named ``step1``..``stepN``; each
appends the line ``<run_id>:step<i>`` to the side-effect file (fsynced) and returns it. Step
``block_at`` first appends ``<run_id>:step<i>:entered``, then waits until the release file
exists, and only then appends its own line. So, while a run is blocked, steps before
``block_at`` are done and journaled (``ctx.step`` returns only after its journal commit) and
the blocked step has had no effect yet: killing the process there is a kill at a known point.

``serve`` and ``WorkerProcess`` are shared with ``drain_app`` and the multi-worker tests.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio
from anyio.abc import Process
from pydantic import BaseModel

from agentflow import Engine, RunContext, Workflow, workflow

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- the workflow ------------------------------------------------------------------------------


class CrashJob(BaseModel):
    side_effects: str
    release: str
    steps: int = 4
    block_at: int = 2


def append_line(path: str, line: str) -> None:
    """Append one line durably: a single O_APPEND write (atomic between processes), fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


async def _blocking_effect(job: CrashJob, line: str) -> str:
    await anyio.to_thread.run_sync(append_line, job.side_effects, f"{line}:entered")
    release = anyio.Path(job.release)
    # Cancellable polling (an Event cannot cross processes); the test creates the file.
    while not await release.exists():  # noqa: ASYNC110
        await anyio.sleep(0.01)
    await anyio.to_thread.run_sync(append_line, job.side_effects, line)
    return line


def _effect(path: str, line: str) -> str:
    append_line(path, line)
    return line


@workflow(id="crash")
async def crash(ctx: RunContext, job: CrashJob) -> list[str]:
    done: list[str] = []
    for i in range(1, job.steps + 1):
        name = f"step{i}"
        line = f"{ctx.run_id}:{name}"
        if i == job.block_at:
            done.append(await ctx.step(name, _blocking_effect, job, line))
        else:
            done.append(await ctx.step(name, _effect, job.side_effects, line))
    return done


# -- the process -------------------------------------------------------------------------------


def _say(*words: object) -> None:
    print(*words, flush=True)


async def serve(workflows: Sequence[Workflow[Any, Any]], argv: Sequence[str]) -> None:
    """Run one worker until SIGTERM/SIGINT, reporting READY / STOPPING / STOPPED on stdout."""
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--sweep-interval", type=float, default=0.1)
    parser.add_argument("--shutdown-grace", type=float, default=5.0)
    args = parser.parse_args(list(argv))

    engine = Engine(args.database_url, workflows)
    worker = engine.worker(
        concurrency=args.concurrency,
        lease=args.lease,
        poll_interval=args.poll_interval,
        sweep_interval=args.sweep_interval,
        shutdown_grace=args.shutdown_grace,
    )
    try:
        # The handler is installed before READY, so a signal is never met by the default action.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                _say("READY", os.getpid(), worker.id)
                async for signum in signals:
                    worker.stop()
                    _say("STOPPING", signal.Signals(signum).name)
                    break
            _say("STOPPED")
    finally:
        await engine.close()


def main(workflows: Sequence[Workflow[Any, Any]]) -> None:
    anyio.run(serve, workflows, sys.argv[1:])


# -- the test-side harness ---------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Awaitable[None]])


def deadline(seconds: float) -> Callable[[F], F]:
    """Fail an async test that runs longer than ``seconds`` instead of letting it hang."""

    def decorate(test: F) -> F:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> None:
            with anyio.fail_after(seconds):
                await test(*args, **kwargs)

        return cast(F, run)

    return decorate


class WorkerProcess:
    """A worker subprocess: read its stdout lines with a deadline, signal it, wait for it."""

    def __init__(self, process: Process, stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self.worker_id = ""
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def diagnostics(self) -> str:
        try:
            err = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            err = ""
        return f"worker pid {self.pid}, returncode {self.process.returncode}, stderr:\n{err}"

    async def ready(self, *, timeout: float = 20.0) -> None:
        """Wait for the READY line; it names the agentflow worker id (``runs.worker_id``)."""
        self.worker_id = (await self.expect("READY", timeout=timeout)).split()[2]

    async def expect(self, prefix: str, *, timeout: float = 20.0) -> str:
        """The next stdout line starting with ``prefix`` (earlier lines are skipped)."""
        assert self.process.stdout is not None
        with anyio.move_on_after(timeout):
            while True:
                while b"\n" in self._buffer:
                    raw, self._buffer = self._buffer.split(b"\n", 1)
                    line = raw.decode(errors="replace").strip()
                    if line.startswith(prefix):
                        return line
                try:
                    self._buffer += await self.process.stdout.receive()
                except anyio.EndOfStream:
                    raise AssertionError(
                        f"worker exited before printing {prefix!r}; {self.diagnostics()}"
                    ) from None
        raise AssertionError(f"no {prefix!r} line within {timeout}s; {self.diagnostics()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the worker."""
        self.process.kill()

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def wait(self, *, timeout: float = 20.0) -> int:
        with anyio.move_on_after(timeout):
            return await self.process.wait()
        raise AssertionError(f"worker did not exit within {timeout}s; {self.diagnostics()}")

    async def stop(self, *, timeout: float = 20.0) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.process.returncode is None:
            self.terminate()
        return await self.wait(timeout=timeout)


@asynccontextmanager
async def spawn_worker(
    module: str, database_url: str, log_dir: Path, *options: str
) -> AsyncIterator[WorkerProcess]:
    """Start ``python -m module database_url *options``; it is killed, if still alive, at exit."""
    stderr_path = log_dir / f"{module.rsplit('.', 1)[-1]}-{os.urandom(4).hex()}.stderr"
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        process = await anyio.open_process(
            [sys.executable, "-m", module, database_url, *options],
            cwd=REPO_ROOT,
            stdin=None,
            stderr=fd,
        )
    finally:
        os.close(fd)
    worker = WorkerProcess(process, stderr_path)
    try:
        yield worker
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            with anyio.move_on_after(10):
                await process.wait()
            await process.aclose()


if __name__ == "__main__":
    main([crash])
