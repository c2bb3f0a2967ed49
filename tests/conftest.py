"""Shared fixtures: the tiny random-weight model, an event loop thread, a real vLLM server.

Everything runs offline on CPU. The environment variables below are set for the test
process and the servers it starts; the package itself never reads os.environ outside
rrm_ui.config.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub is unreachable: fail at once, never retry
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache per CPU engine
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
T = TypeVar("T")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.fail(f"{path} is missing: the tests read real judging data from ../shared/data")
    return path


def llmbar_subset(shared_data: Path, dest: Path, n: int) -> Path:
    """The first ``n`` pairs of LLMBar Natural (the raw JSON list) written to ``dest``/llmbar-<n>.json."""
    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:n]
    path = dest / f"llmbar-{n}.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rrm_ui.dev.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def demo_judge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo judge (rrm_ui.dev.demo_judge), trained once per session on CPU."""
    from rrm_ui.dev.demo_judge import build_demo_judge

    return build_demo_judge(tmp_path_factory.mktemp("demo-judge"))


class LoopThread:
    """One event loop in a background thread, so session-scoped async backends outlive a test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="session")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """A real ``vllm.entrypoints.openai.api_server`` process serving a model on loopback."""

    def __init__(self, model: Path, log_dir: Path, *, reasoning_parser: bool = True, port: int | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.port = port or free_port()  # a port given: a server coming back where an earlier one was
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_dir / f"vllm-server-{self.port}-{time.monotonic_ns()}.log"
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model), "--port", str(self.port), "--host", "127.0.0.1",
            "--dtype", "float32", "--enforce-eager", "--gpu-memory-utilization", "0.2",
            "--max-model-len", "8192",
            # on CPU, seeded requests with chunked prefill crash vLLM's engine (docs/backends.md)
            "--no-enable-chunked-prefill",
        ]  # fmt: skip
        if reasoning_parser:
            cmd += ["--reasoning-parser", "deepseek_r1"]
        cmd += list(extra_args)  # e.g. ("--scheduling-policy", "priority")
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 300) -> VLLMServer:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"vLLM server not ready after {timeout}s:\n{self.tail()}")

    def metric(self, name: str) -> float:
        import httpx

        text = httpx.get(self.url.removesuffix("/v1") + "/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def kill(self) -> None:
        """SIGKILL the server and its engine process group (no graceful shutdown)."""
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture(scope="session")
def vllm_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    server = VLLMServer(tiny_model, tmp_path_factory.mktemp("logs"))
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def demo_vllm_server(demo_judge: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    server = VLLMServer(demo_judge, tmp_path_factory.mktemp("demo-logs"))
    try:
        yield server.wait_ready()
    finally:
        server.stop()


class PostgresServer:
    """A throwaway PostgreSQL cluster (Debian's postgresql package) on a free loopback port."""

    def __init__(self, base: Path) -> None:
        import glob
        import shutil

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            pytest.fail("PostgreSQL server binaries not found: scripts/test.sh installs Debian's postgresql package")
        self.bin = Path(bins[-1])
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(base, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "rrm", "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(base / "log"), "-w", "start",
                  "-o", f"-p {self.port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off")  # fmt: skip
        self.admin_url = f"postgresql+psycopg://rrm@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed: {proc.stdout}\n{proc.stderr}")

    def new_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return f"postgresql+psycopg://rrm@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "stop")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="rrm-ui-pg-"))  # pytest's tmp tree is closed to the postgres user
    server = PostgresServer(base)
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same storage tests against SQLite (the default) and a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rrm_ui.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database(f"t_{abs(hash(request.node.nodeid)) % 10**12}")
