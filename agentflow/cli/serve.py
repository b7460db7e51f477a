"""``agentflow worker``, ``agentflow dev`` and ``agentflow serve``: long-running processes with
graceful shutdown.

The first SIGTERM or SIGINT (Ctrl-C) stops claiming runs and lets the running ones finish
(up to ``--shutdown-grace`` seconds); what is still running then is handed back to the queue
for another worker. A second signal forces the process down at once (its runs are reclaimed
by other workers when their lease expires).
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .errors import EXIT_FAILURE, run_async
from .options import AppArg, opened_engine, parse_log_level

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from agentflow.engine import Engine
    from agentflow.worker import Worker

__all__ = ["dev", "serve", "worker"]

# A service runs next to the worker until the process shuts down: it calls
# ``task_status.started()`` once it is ready and returns (or is cancelled) at shutdown.
Service = Callable[..., Coroutine[Any, Any, None]]

ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", "-c", min=1, help="Runs executed at the same time.")
]
GraceOpt = Annotated[
    float,
    typer.Option(
        "--shutdown-grace",
        metavar="SECONDS",
        min=0,
        help="On SIGTERM/Ctrl-C, let running runs finish this long before handing them back.",
    ),
]
HostOpt = Annotated[
    str,
    typer.Option(
        "--host",
        help="Interface to listen on; other than loopback only once an API key exists.",
    ),
]
NoAuthOpt = Annotated[
    bool,
    typer.Option(
        "--no-auth", help="Serve without API keys (loopback only; for local experiments)."
    ),
]
PortOpt = Annotated[int, typer.Option("--port", min=0, max=65535, help="HTTP API port.")]
LogLevelOpt = Annotated[
    str, typer.Option("--log-level", help="Logging level (debug, info, warning, error).")
]


def worker(
    app: AppArg,
    concurrency: ConcurrencyOpt = 50,
    lease: Annotated[
        float,
        typer.Option(
            "--lease",
            metavar="SECONDS",
            min=0.1,
            help="How long a claimed run stays ours without a heartbeat; a crashed worker's "
            "runs are reclaimed after this.",
        ),
    ] = 30.0,
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval",
            metavar="SECONDS",
            min=0.01,
            help="How often to look for runs triggered by other processes.",
        ),
    ] = 0.25,
    shutdown_grace: GraceOpt = 30.0,
    log_level: LogLevelOpt = "info",
) -> None:
    """Run a worker: claim runs of APP's workflows and execute them, until SIGTERM/Ctrl-C.

    The worker also fires due timers and reclaims runs of workers that died. Run as many
    workers as you like, on as many machines as share the database.
    """
    options = {
        "concurrency": concurrency,
        "lease": lease,
        "poll_interval": poll_interval,
        "shutdown_grace": shutdown_grace,
    }
    _serve(app, options, log_level=log_level, mode="worker")


def dev(
    app: AppArg,
    concurrency: ConcurrencyOpt = 10,
    shutdown_grace: GraceOpt = 5.0,
    port: PortOpt = 8000,
    no_api: Annotated[bool, typer.Option("--no-api", help="Do not serve the HTTP API.")] = False,
    log_level: LogLevelOpt = "info",
) -> None:
    """Develop locally: worker, scheduler and HTTP API (on 127.0.0.1) in one process.

    Shows runs as they change status, and prints a fresh API key for this session (the
    previous session's dev key is revoked). Stop with Ctrl-C.
    """
    options = {"concurrency": concurrency, "shutdown_grace": shutdown_grace}
    api = None if no_api else ("127.0.0.1", port)
    _serve(app, options, log_level=log_level, mode="dev", api=api)


def serve(
    app: AppArg,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    no_auth: NoAuthOpt = False,
    log_level: LogLevelOpt = "info",
) -> None:
    """Serve APP's HTTP API (JSON under /api/v1, /openapi.json) until SIGTERM/Ctrl-C.

    Runs no worker: start `agentflow worker APP` next to it to execute the runs.
    """

    async def main() -> None:
        import anyio

        if no_auth:
            _require_loopback(host, "--no-auth")
        _configure_logging(log_level)
        async with opened_engine(app) as engine, anyio.create_task_group() as tg:
            await _check_keys(engine, app, host, no_auth)
            sock = _bind(host, port)
            await tg.start(_api_service(engine, sock, log_level, auth=not no_auth))
            _say(f"agentflow API ready at {_url(sock)}/api/v1 (OpenAPI: {_url(sock)}/openapi.json)")
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    _say(f"{signal.Signals(signum).name}: shutting down")
                    break
            tg.cancel_scope.cancel()
        _say("stopped")

    run_async(main)


async def _check_keys(engine: Engine, app: str, host: str, no_auth: bool) -> None:
    """Refuse to expose the API beyond loopback with no key; warn when no key exists."""
    from .errors import UsageError

    if no_auth or await engine.api_keys.any_active():
        return
    hint = f"create one with 'agentflow keys create {app} NAME'"
    if not _is_loopback(host):
        raise UsageError(
            f"refusing to serve the API on {host!r} with no API key: anyone who can reach "
            f"it could use it; {hint}"
        )
    _say(f"no API key yet: requests are refused until you {hint}", style="bold yellow")


def _serve(
    app: str,
    options: dict[str, Any],
    *,
    log_level: str,
    mode: str,
    api: tuple[str, int] | None = None,
) -> None:
    async def main() -> bool:
        _configure_logging(log_level)
        async with opened_engine(app) as engine:
            w = engine.worker(**options)
            services: list[Service] = []
            api_url = api_key = None
            if mode == "dev":
                services.append(_activity_feed(engine))
                if api is not None:
                    sock = _bind_for_dev(*api)
                    if sock is not None:
                        services.append(_api_service(engine, sock, log_level))
                        api_url = _url(sock)
                        await engine.api_keys.revoke_named(DEV_KEY_NAME)
                        api_key = (await engine.api_keys.create(DEV_KEY_NAME)).secret
            try:
                return await _run_until_signalled(
                    engine, w, services, app=app, mode=mode, api_url=api_url, api_key=api_key
                )
            finally:
                if api_key is not None:  # a session's key ends with the session
                    import anyio

                    with anyio.CancelScope(shield=True):
                        await engine.api_keys.revoke_named(DEV_KEY_NAME)

    forced = run_async(main)
    if forced:
        raise typer.Exit(EXIT_FAILURE)


def _configure_logging(level: str) -> None:
    import logging

    from rich.logging import RichHandler

    from .output import err_console

    numeric = parse_log_level(level)
    handler = RichHandler(console=err_console(), show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=numeric, format="%(message)s", datefmt="[%X]", handlers=[handler])
    # Alembic, uvicorn's startup and the MCP SDK narrate at INFO what the banner already
    # says; only say something when asked to (--log-level debug).
    for name in ("alembic", "uvicorn.error", "mcp"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


async def _run_until_signalled(
    engine: Engine,
    w: Worker,
    services: list[Service],
    *,
    app: str,
    mode: str,
    api_url: str | None = None,
    api_key: str | None = None,
) -> bool:
    """Run the worker and ``services`` until a signal; True if shutdown had to be forced."""
    import anyio

    forced = False

    async def watch_signals(
        scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        nonlocal forced
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            stopping = False
            async for signum in signals:
                name = signal.Signals(signum).name
                if not stopping:
                    stopping = True
                    _say(
                        f"{name}: shutting down; letting {len(w.active_runs)} running run(s) "
                        f"finish for up to {w.shutdown_grace:g}s (signal again to force)"
                    )
                    w.stop()
                else:
                    _say(f"{name}: forcing shutdown", style="bold red")
                    forced = True
                    scope.cancel()
                    return

    async with anyio.create_task_group() as outer:
        await outer.start(watch_signals, outer.cancel_scope)
        async with anyio.create_task_group() as services_group:
            async with anyio.create_task_group() as worker_group:
                await worker_group.start(w.run)
                for service in services:
                    await services_group.start(service)
                _announce(engine, w, app=app, mode=mode, api_url=api_url, api_key=api_key)
            # The worker has stopped: its runs finished or were handed back to the queue.
            services_group.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    if forced:
        _say("stopped (forced): runs still executing are reclaimed when their lease expires")
    else:
        _say("stopped")
    return forced


def _say(message: str, *, style: str = "bold") -> None:
    from .output import say

    say(message, style=style, err=True)


def _announce(
    engine: Engine,
    w: Worker,
    *,
    app: str,
    mode: str,
    api_url: str | None = None,
    api_key: str | None = None,
) -> None:
    from rich.markup import escape

    from .output import display_url, err_console

    names = ", ".join(sorted(engine.workflows)) or "none registered"
    label = "agentflow dev" if mode == "dev" else f"worker {w.id}"
    lines = [
        f"[bold]{escape(label)} ready[/] (concurrency {w.concurrency})",
        f"  database:  {escape(display_url(engine.database_url))}",
        f"  workflows: {escape(names)}",
    ]
    if api_url is not None:
        lines.append(
            f"  http api:  {escape(api_url)}/api/v1  (OpenAPI: {escape(api_url)}/openapi.json)"
        )
        lines.append(
            f"  mcp:       {escape(api_url)}/mcp  [dim](streamable HTTP; stdio: agentflow mcp "
            f"{escape(app)})[/]"
        )
    if api_key is not None:
        lines.append(
            f"  api key:   {escape(api_key)}  [dim](this session's; "
            "send as 'Authorization: Bearer <key>')[/]"
        )
    if mode == "dev":
        example = sorted(engine.workflows)[0] if engine.workflows else "WORKFLOW"
        lines.append(
            f"  [dim]try (in another terminal): agentflow trigger {escape(app)} {escape(example)} "
            "--payload '{...}' --wait  ·  Ctrl-C to stop[/]"
        )
    # One write, so that whoever reads the output sees the whole banner at once.
    err_console().print("\n".join(lines), highlight=False, soft_wrap=True)


def _activity_feed(engine: Engine, interval: float = 0.5) -> Service:
    """A service printing runs whose status changed (the newest 100 runs are watched)."""

    async def feed(*, task_status: TaskStatus[None]) -> None:
        import anyio
        from rich.markup import escape

        from .output import err_console, error_text, fmt_duration, run_duration, status_text

        seen = {run.id: run.status for run in await engine.list_runs(limit=100)}
        task_status.started()
        out = err_console()
        while True:
            await anyio.sleep(interval)
            for run in reversed(await engine.list_runs(limit=100)):
                if seen.get(run.id) == run.status:
                    continue
                seen[run.id] = run.status
                line = f"run {run.id} {run.workflow_id}: {status_text(run.status.value)}"
                if run.status.is_terminal and run.started_at is not None:
                    line += f" in {fmt_duration(run_duration(run))}"
                if run.error:
                    line += f" [red]({escape(error_text(run.error))})[/]"
                out.print(line, highlight=False)

    return feed


# -- the HTTP API as a service ----------------------------------------------------------------


DEV_KEY_NAME = "agentflow dev"


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_loopback(host: str, option: str) -> None:
    from .errors import UsageError

    if not _is_loopback(host):
        raise UsageError(
            f"refusing to serve the API on {host!r} with {option}: without API keys it only "
            "listens on a loopback address (127.0.0.1, ::1, localhost)"
        )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0 picks a free one), or a clear CLI error."""
    from .errors import CLIError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on sockets that say they are TCP;
    # without it every keep-alive response waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise CLIError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port"
        ) from None
    sock.setblocking(False)
    return sock


def _bind_for_dev(host: str, port: int) -> socket.socket | None:
    """Like ``_bind``, but a busy port only costs the API, not the whole dev session."""
    from .errors import CLIError

    try:
        return _bind(host, port)
    except CLIError as exc:
        _say(f"HTTP API not started: {exc}; or pass --no-api", style="bold yellow")
        return None


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _api_service(
    engine: Engine, sock: socket.socket, log_level: str, *, auth: bool = True
) -> Service:
    """A service running uvicorn with the API on ``sock``; it stops gracefully when cancelled."""

    async def api(*, task_status: TaskStatus[None]) -> None:
        import anyio

        from .errors import CLIError

        server, ready = _uvicorn_server(engine, log_level, auth=auth)
        async with anyio.create_task_group() as tg:

            async def run_server() -> None:
                try:
                    with anyio.CancelScope(shield=True):  # finish requests, do not cut them
                        await server.serve(sockets=[sock])
                finally:
                    ready.set()

            tg.start_soon(run_server)
            try:
                await ready.wait()
                if not server.started:
                    raise CLIError("the HTTP API server failed to start (see the log above)")
                task_status.started()
                await anyio.sleep_forever()
            finally:
                server.should_exit = True

    return api


def _uvicorn_server(engine: Engine, log_level: str, *, auth: bool = True) -> tuple[Any, Any]:
    """A uvicorn server for the API that leaves signals to us, and an event set once it is up."""
    import contextlib
    from collections.abc import Iterator

    import anyio
    import uvicorn

    from agentflow.api import create_app

    ready = anyio.Event()

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # The process's own signal handling stops the server (by cancelling its service).
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            ready.set()

    level = log_level.lower()
    config = uvicorn.Config(
        create_app(engine, auth=auth),
        # uvicorn's startup lines repeat the banner: shown with --log-level debug only.
        log_level=level if level in ("debug", "error", "critical") else "warning",
        lifespan="on",
        access_log=False,
    )
    return Server(config), ready
