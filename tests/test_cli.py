"""The ``agentflow`` command line, driven as real subprocesses of the console script.

Every test gets its own SQLite file (AGENTFLOW_DATABASE_URL) and runs the CLI from the
repository root, so ``tests.apps.cli_app:engine`` imports from the working directory the way a
user's app would. Workers run as background subprocesses; the tests wait for what they print
("ready", "shutting down") and for run states in the database (polled under a deadline), never
for a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from agentflow import Engine, RunStatus
from agentflow.storage.migrate import HEAD

from ._support import eventually
from .apps import cli_app

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[1]
APP = "tests.apps.cli_app:engine"
_SCRIPT = Path(sys.executable).with_name("agentflow")
AGENTFLOW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "agentflow.cli"]
WORKER = ("worker", APP, "--poll-interval", "0.05")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Background:
    """A long-running CLI process whose combined output is collected as it arrives."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.output = ""
        self.closed = False  # the process closed its output (it exited)
        self._changed = anyio.Event()

    async def pump(self) -> None:
        assert self.process.stdout is not None
        async for chunk in self.process.stdout:
            self.output += chunk.decode(errors="replace")
            self._changed.set()
            self._changed = anyio.Event()
        self.closed = True
        self._changed.set()

    async def expect(self, text: str, timeout: float = 20) -> None:
        """Wait until the process has printed ``text``."""
        with anyio.move_on_after(timeout):
            while True:
                changed = self._changed
                if text in self.output:
                    return
                if self.closed:
                    break
                await changed.wait()
        raise AssertionError(f"no {text!r} from the process; its output:\n{self.output}")

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def exit_code(self, timeout: float = 20) -> int:
        with anyio.move_on_after(timeout):
            return await self.process.wait()
        raise AssertionError(f"the process did not exit; its output:\n{self.output}")


class CLI:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.env = {
            **os.environ,
            "AGENTFLOW_DATABASE_URL": database_url,
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }

    async def __call__(self, *args: str, code: int | None = 0, stdin: str | None = None) -> Result:
        done = await anyio.run_process(
            [*AGENTFLOW, *args],
            input=None if stdin is None else stdin.encode(),
            cwd=REPO,
            env=self.env,
            check=False,
        )
        result = Result(done.returncode, done.stdout.decode(), done.stderr.decode())
        if code is not None:
            assert result.code == code, f"agentflow {' '.join(args)}: {result}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    @asynccontextmanager
    async def background(self, *args: str) -> AsyncIterator[Background]:
        process = await anyio.open_process(
            [*AGENTFLOW, *args], cwd=REPO, env=self.env, stderr=subprocess.STDOUT
        )
        proc = Background(process)
        async with process, anyio.create_task_group() as tg:
            tg.start_soon(proc.pump)
            try:
                yield proc
            finally:
                if process.returncode is None:
                    process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()
                # Shown by pytest when the test fails.
                print(f"--- agentflow {' '.join(args)} (exit {process.returncode}) ---")
                print(proc.output)

    @asynccontextmanager
    async def worker(self, *options: str) -> AsyncIterator[Background]:
        """A worker process, once it says it is ready; stopped with SIGTERM at the end."""
        async with self.background(*WORKER, *options) as worker:
            await worker.expect("ready")
            yield worker
            if worker.process.returncode is None:
                worker.signal(signal.SIGTERM)
                assert await worker.exit_code() == 0, worker.output


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def cli(db_url: str) -> CLI:
    return CLI(db_url)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[Engine]:
    """The test app's workflows on the CLI's database, in the test process: to set up runs
    that a test does not trigger through the CLI, and to watch run states."""
    engine = Engine(db_url, list(cli_app.engine.workflows.values()))
    yield engine
    await engine.close()


async def run_in(engine: Engine, run_id: str, *statuses: RunStatus) -> bool:
    return (await engine.get_run(run_id)).status in statuses


async def wait_status(engine: Engine, run_id: str, *statuses: RunStatus) -> None:
    try:
        await eventually(lambda: run_in(engine, run_id, *statuses), timeout=20)
    except AssertionError:
        run = await engine.get_run(run_id)
        waits = await engine.list_waitpoints(run_id=run_id)
        raise AssertionError(
            f"run never reached {statuses}: {run!r}; waitpoints: {waits!r}"
        ) from None


async def trigger(engine: Engine, workflow: str, payload: Any = None) -> str:
    return (await engine.trigger(workflow, payload)).id


# -- help, db ---------------------------------------------------------------------------------


async def test_help_lists_every_command(cli: CLI) -> None:
    result = await cli("--help")
    for command in ("dev", "worker", "trigger", "approve", "reject", "runs", "events", "db"):
        assert command in result.stdout
    assert (await cli("--version")).stdout.startswith("agentflow ")
    assert (await cli(code=2)).code == 2  # no command: usage


async def test_db_upgrade_and_current(cli: CLI, tmp_path: Path) -> None:
    before = (await cli("db", "current", "--json")).json()
    assert before["revision"] is None
    assert before["up_to_date"] is False
    assert not (tmp_path / "cli.db").exists()  # asking does not create the database

    upgraded = (await cli("db", "upgrade", "--json")).json()
    assert upgraded["revision"] == HEAD
    assert (await cli("db", "current")).stdout.strip().endswith(f"revision {HEAD} (up to date)")

    # An explicit URL, or an APP's engine, work the same way.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert (await cli("db", "upgrade", "--database-url", other, "--json")).json()[
        "revision"
    ] == HEAD
    assert (await cli("db", "current", APP, "--json")).json()["up_to_date"] is True
    both = await cli("db", "upgrade", APP, "--database-url", other, code=2)
    assert "either APP or --database-url" in both.stderr


# -- trigger, list, show, errors --------------------------------------------------------------


async def test_trigger_then_list_and_show(cli: CLI, engine: Engine) -> None:
    payload = {"name": "ann", "times": 2}
    args = ("greet", "--payload", json.dumps(payload), "--idempotency-key", "k1")
    first = (await cli("trigger", APP, *args, "--tag", "cli", "--tag", "demo", "--json")).json()
    assert first["created"] is True
    assert first["status"] == "queued"
    run_id = first["id"]
    again = await cli("trigger", APP, *args)  # same key: the same run, nothing new
    assert f"found existing run for this idempotency key: run {run_id}" in again.stdout
    delayed = (await engine.trigger("greet", {"name": "bo"}, delay=3600)).id

    filtered = await cli(
        "runs", "list", APP, "-w", "greet", "-s", "queued", "-s", "delayed", "--tag", "demo",
        "-n", "5", "--json",
    )  # fmt: skip
    assert [r["id"] for r in filtered.json()] == [run_id]
    table = (await cli("runs", "list", APP)).stdout
    assert run_id in table
    assert delayed in table
    assert "delayed" in table

    shown = (await cli("runs", "show", APP, run_id, "--json")).json()
    assert shown["run"]["payload"] == payload
    assert shown["run"]["tags"] == ["cli", "demo"]
    assert shown["steps"] == shown["logs"] == shown["errors"] == shown["pending_approvals"] == []
    text = (await cli("runs", "show", APP, run_id)).stdout
    assert run_id in text
    assert "queued" in text


async def test_invalid_payload_exits_2_naming_each_field(cli: CLI) -> None:
    bad = await cli("trigger", APP, "greet", "--payload", '{"times": "many"}', code=2)
    assert "invalid payload for workflow 'greet'" in bad.stderr
    assert "name: Field required" in bad.stderr
    assert "times: Input should be a valid integer" in bad.stderr

    as_json = await cli("trigger", APP, "greet", "--payload", '{"times": "many"}', "--json", code=2)
    error = json.loads(as_json.stderr)["error"]
    assert error["code"] == "invalid_payload"
    assert [e["field"] for e in error["errors"]] == ["name", "times"]

    not_json = await cli("trigger", APP, "greet", "--payload", "{name: x}", code=2)
    assert "--payload is not valid JSON" in not_json.stderr
    assert (await cli("runs", "list", APP, "--json")).json() == []  # no run was created


async def test_unknown_workflow_names_the_available_ones(cli: CLI) -> None:
    result = await cli("trigger", APP, "nope", code=1)
    assert result.stderr.strip() == (
        "error: unknown workflow 'nope'; available workflows: "
        "await_event, broken, expense, gated, greet"
    )


async def test_bad_app_and_missing_run(cli: CLI) -> None:
    missing = await cli("runs", "list", "no_such_module:engine", code=2)
    assert "cannot import 'no_such_module:engine': No module named 'no_such_module'" in (
        missing.stderr
    )
    no_attr = await cli("runs", "list", "tests.apps.cli_app:nope", code=2)
    assert "has no attribute 'nope'" in no_attr.stderr
    not_engine = await cli("runs", "list", "tests.apps.cli_app:greet", code=2)
    assert "'tests.apps.cli_app:greet' is not an agentflow Engine" in not_engine.stderr

    unknown = await cli("runs", "show", APP, "run_nope", code=1)
    assert unknown.stderr.strip() == "error: no run with id 'run_nope'"


async def test_unreachable_database_fails_fast(cli: CLI) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    url = "postgresql://postgres:secret@127.0.0.1:1/agentflow"
    result = await cli("db", "current", "--database-url", url, code=1)
    assert result.stderr.startswith("error: cannot connect to postgresql+psycopg://postgres:***@")
    assert "secret" not in result.stderr


async def test_cancel(cli: CLI, engine: Engine) -> None:
    run_id = await trigger(engine, "greet", {"name": "ann"})
    assert f"cancelled run {run_id}" in (await cli("runs", "cancel", APP, run_id)).stdout
    shown = (await cli("runs", "show", APP, run_id, "--json")).json()
    assert shown["run"]["status"] == "cancelled"
    again = await cli("runs", "cancel", APP, run_id, code=1)
    assert "already ended" in again.stderr


async def test_idempotent_trigger_from_several_processes_starts_one_run(cli: CLI) -> None:
    await cli("db", "upgrade", APP)
    results: list[dict[str, Any]] = []

    async def fire() -> None:
        args = ("trigger", APP, "greet", "--payload", '{"name": "ann"}')
        results.append((await cli(*args, "--idempotency-key", "once", "--json")).json())

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(fire)
    assert len({r["id"] for r in results}) == 1
    assert sum(r["created"] for r in results) == 1


async def test_cancel_many_replay_and_fork(cli: CLI, engine: Engine) -> None:
    ids = [await trigger(engine, "greet", {"name": n}) for n in ("ann", "bob")]
    refused = await cli("runs", "cancel-many", APP, code=2)
    assert "--yes" in refused.stderr
    later = ("--since", "2999-01-01T00:00:00")
    none = (await cli("runs", "cancel-many", APP, "--workflow", "greet", *later, "--json")).json()
    assert none["cancelled"] == []
    since = ("--since", "2000-01-01T00:00:00+00:00", "--until", "2999-01-01T00:00:00")
    done = (await cli("runs", "cancel-many", APP, "--workflow", "greet", *since, "--json")).json()
    assert sorted(done["cancelled"]) == sorted(ids)
    replayed = (await cli("runs", "replay", APP, ids[0], "--json")).json()
    assert (replayed["payload"]["name"], replayed["metadata"]["replay_of"]) == ("ann", ids[0])
    many = (await cli("runs", "replay-many", APP, "--status", "cancelled", "--json")).json()
    assert len(many["started"]) == 2
    failed = await trigger(engine, "broken")
    async with cli.worker():
        await wait_status(engine, failed, RunStatus.FAILED)
    forked = (await cli("runs", "fork", APP, failed, "--from-step", "explode", "--json")).json()
    assert forked["metadata"]["forked_from"] == {"run_id": failed, "from_step": 1}
    missing = await cli("runs", "fork", APP, failed, "--from-step", "nope", code=1)
    assert "no step named 'nope'" in missing.stderr


# -- with a worker ----------------------------------------------------------------------------


async def test_trigger_wait_with_a_worker(cli: CLI) -> None:
    async with cli.worker():
        done = await cli(
            "trigger", APP, "greet", "-p", '{"name": "ann", "times": 2}', "--wait", "--json"
        )
        run = done.json()
        assert run["status"] == "completed"
        assert run["output"] == {"greeting": "hello ann hello ann"}

        human = await cli("trigger", APP, "greet", "-p", "-", "--wait", stdin='{"name": "bo"}')
        assert json.loads(human.stdout) == {"greeting": "hello bo"}
        assert "completed" in human.stderr

        failed = await cli("trigger", APP, "broken", "--wait", "--timeout", "30", code=1)
        assert "failed" in failed.stderr
        assert "the flux capacitor is out of flux" in failed.stderr

    shown = (await cli("runs", "show", APP, run["id"], "--json")).json()
    assert [(s["name"], s["status"]) for s in shown["steps"]] == [("compose", "completed")]
    assert [entry["message"] for entry in shown["logs"]] == ["greeted"]


async def test_approve_and_reject_via_cli(cli: CLI, engine: Engine) -> None:
    expense = {"item": "laptop", "amount": 1200}
    async with cli.worker():
        first = await trigger(engine, "expense", expense)
        second = await trigger(engine, "expense", expense)
        for run_id in (first, second):
            await wait_status(engine, run_id, RunStatus.WAITING)

        shown = (await cli("runs", "show", APP, first, "--json")).json()
        [approval] = shown["pending_approvals"]
        assert approval["name"] == "manager"
        assert approval["data"] == expense
        assert approval["token"]
        assert "manager" in (await cli("runs", "show", APP, first)).stdout

        edited = {"item": "laptop", "amount": 1000}
        decision = await cli(
            "approve", APP, first, "manager",
            "--approver", "alice", "--comment", "ok", "--data", json.dumps(edited), "--json",
        )  # fmt: skip
        assert decision.json()["status"] == "approved"
        assert decision.json()["edited"] is True

        [pending] = await engine.pending_approvals(run_id=second)
        rejected = await cli("reject", APP, "--token", str(pending.token), "--approver", "bob")
        assert "rejected approval" in rejected.stdout

        await wait_status(engine, first, RunStatus.COMPLETED)
        await wait_status(engine, second, RunStatus.COMPLETED)

    assert (await engine.get_run(first)).output == {
        "approved": True, "approver": "alice", "comment": "ok", "data": edited,
    }  # fmt: skip
    assert (await engine.get_run(second)).output["approved"] is False

    twice = await cli("approve", APP, first, "manager", code=1)
    assert twice.stderr.startswith("error: ")
    usage = await cli("approve", APP, first, code=2)
    assert "RUN_ID NAME, or --token" in usage.stderr


async def test_events_send_resumes_a_waiting_run(cli: CLI, engine: Engine) -> None:
    async with cli.worker():
        run_id = await trigger(engine, "await_event")
        await wait_status(engine, run_id, RunStatus.WAITING)
        sent = await cli(
            "events", "send", APP, "go", "--payload", '{"n": 1}', "--id", "e1", "--json"
        )
        assert sent.json()["resumed_runs"] == 1
        await wait_status(engine, run_id, RunStatus.COMPLETED)
    assert (await engine.get_run(run_id)).output == {"n": 1}
    again = await cli("events", "send", APP, "go", "--payload", '{"n": 1}', "--id", "e1")
    assert "already recorded" in again.stdout


async def test_worker_exits_cleanly_on_sigterm(cli: CLI) -> None:
    async with cli.background(*WORKER) as worker:
        await worker.expect("ready")
        worker.signal(signal.SIGTERM)
        assert await worker.exit_code() == 0
    assert "SIGTERM: shutting down" in worker.output
    assert "Traceback" not in worker.output


async def test_sigterm_lets_a_running_run_finish(cli: CLI, engine: Engine, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with cli.background(*WORKER) as worker:
        await worker.expect("ready")
        run_id = await trigger(engine, "gated", {"path": str(gate)})
        await wait_status(engine, run_id, RunStatus.RUNNING)
        worker.signal(signal.SIGTERM)
        await worker.expect("letting 1 running run(s) finish")
        gate.touch()
        assert await worker.exit_code() == 0
    run = await engine.get_run(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.output == "opened"


async def test_sigterm_hands_back_a_run_after_the_grace(
    cli: CLI, engine: Engine, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    async with cli.background(*WORKER, "--shutdown-grace", "0") as worker:
        await worker.expect("ready")
        run_id = await trigger(engine, "gated", {"path": str(gate)})
        await wait_status(engine, run_id, RunStatus.RUNNING)
        worker.signal(signal.SIGTERM)
        assert await worker.exit_code() == 0
    assert (await engine.get_run(run_id)).status is RunStatus.QUEUED  # handed back

    gate.touch()
    async with cli.worker():  # another worker picks it up and finishes it
        await wait_status(engine, run_id, RunStatus.COMPLETED)


async def test_dev_runs_worker_and_prints_the_database(cli: CLI, db_url: str) -> None:
    async with cli.background("dev", APP, "--port", "0") as dev:  # 8000 may be taken
        await dev.expect("ready")
        assert db_url in dev.output
        assert "trigger" in dev.output  # the hint
        done = await cli("trigger", APP, "greet", "-p", '{"name": "dev"}', "--wait", "--json")
        assert done.json()["status"] == "completed"
        await dev.expect(f"run {done.json()['id']} greet: completed")
        dev.signal(signal.SIGINT)
        assert await dev.exit_code() == 0


async def test_dev_prints_a_session_api_key_that_the_api_accepts(cli: CLI) -> None:
    import re

    import httpx

    async with cli.background("dev", APP, "--port", "0") as dev:
        await dev.expect("api key:")
        url = re.search(r"http api:\s+(http://\S+)/api/v1", dev.output)
        key = re.search(r"api key:\s+(af_\S+)", dev.output)
        assert url is not None
        assert key is not None
        async with httpx.AsyncClient(base_url=url.group(1)) as client:
            assert (await client.get("/api/v1/runs")).status_code == 401
            headers = {"Authorization": f"Bearer {key.group(1)}"}
            assert (await client.get("/api/v1/runs", headers=headers)).status_code == 200
        dev.signal(signal.SIGINT)
        assert await dev.exit_code() == 0
    # The session's key ends with the session.
    assert (await cli("keys", "list", APP, "--json")).json() == []
    revoked = (await cli("keys", "list", APP, "--all", "--json")).json()
    assert [(k["name"], k["revoked_at"] is not None) for k in revoked] == [("agentflow dev", True)]


async def test_serve_refuses_a_public_address_without_keys(cli: CLI) -> None:
    refused = await cli("serve", APP, "--host", "0.0.0.0", "--port", "0", code=2)
    assert "refusing to serve the API on '0.0.0.0' with no API key" in refused.stderr
    no_auth = await cli("serve", APP, "--host", "0.0.0.0", "--no-auth", code=2)
    assert "loopback" in no_auth.stderr


async def test_keys_create_list_revoke(cli: CLI) -> None:
    created = await cli("keys", "create", APP, "ci", "--scope", "read", "--json")
    key = created.json()
    assert key["secret"].startswith("af_")
    assert key["key"]["scope"] == "read"
    listed = await cli("keys", "list", APP)
    assert key["key"]["id"] in listed.stdout
    assert key["secret"] not in listed.stdout
    await cli("keys", "revoke", APP, key["key"]["id"])
    assert (await cli("keys", "list", APP, "--json")).json() == []
    assert key["key"]["id"] in (await cli("keys", "list", APP, "--all")).stdout
    missing = await cli("keys", "revoke", APP, "key_nope", code=None)
    assert missing.code != 0
    assert "key_nope" in missing.stderr
    await cli("keys", "create", APP, "x", "--scope", "admin", code=2)


async def test_webhooks_create_list_delete(cli: CLI) -> None:
    created = (await cli("webhooks", "create", APP, "stripe", "--json")).json()
    assert created["secret"].startswith("whsec_")
    assert created["source"]["event"] == "webhook.stripe"
    listed = await cli("webhooks", "list", APP)
    assert "stripe" in listed.stdout
    assert created["secret"] not in listed.stdout
    await cli("webhooks", "delete", APP, "stripe")
    assert (await cli("webhooks", "list", APP, "--json")).json() == []
    bad = await cli("webhooks", "create", APP, "bad name!", code=None)
    assert bad.code != 0
    assert "invalid webhook source name" in bad.stderr
