"""The repository's own rules: layers import one way, heavy libraries load lazily, settings are documented."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

from rrm_ui.config import Settings

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "rrm_ui"

# package -> rrm_ui packages it must never import
FORBIDDEN = {
    "domain": {"protocol", "backends", "engine", "io", "cli", "config", "storage", "services", "ui", "analysis"},
    "protocol": {"backends", "engine", "io", "cli", "storage", "services", "ui", "analysis"},
    "backends": {"engine", "io", "cli", "storage", "services", "ui", "analysis"},
    "engine": {"io", "cli", "storage", "services", "ui", "analysis"},
    "io": {"backends", "engine", "storage", "services", "cli", "ui"},
    "storage": {"backends", "engine", "io", "services", "cli", "ui", "analysis"},
    "services": {"cli", "ui"},
    "ui": {"storage", "backends", "cli"},
    "analysis": {"backends", "engine", "io", "cli", "services", "ui"},
}
HEAVY = {"torch", "vllm", "transformers", "gradio"}


def rrm_imports(path: Path) -> set[tuple[str, int]]:
    """(top-level name, line) of every import in a file; ``rrm_ui.x`` is reported as ``x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            found.add((parts[1] if parts[0] == "rrm_ui" and len(parts) > 1 else parts[0], node.lineno))
    return found


def test_layers_import_one_way() -> None:
    wrong = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        layer = rel.parts[0].removesuffix(".py")
        for name, line in rrm_imports(path):
            if name in FORBIDDEN.get(layer, ()):
                wrong.append(f"{rel}:{line} imports rrm_ui.{name}")
    assert not wrong, "layer rule broken:\n" + "\n".join(wrong)


def test_heavy_libraries_only_inside_functions() -> None:
    """torch / vllm / transformers are imported where a backend is chosen, never at module level.

    gradio may be imported at the top of the ``ui`` package only: nothing else imports ``ui``
    at module level (the CLI's ``serve`` does it inside its handler).
    """
    wrong = []
    for path in PKG.rglob("*.py"):
        in_ui = path.relative_to(PKG).parts[0] == "ui"
        for node in ast.parse(path.read_text()).body:  # module-level statements only
            if isinstance(node, ast.Import | ast.ImportFrom):
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                top = mod.split(".")[0] if mod else ""
                if top in HEAVY and not (in_ui and top == "gradio"):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not wrong, wrong


def test_cli_starts_without_heavy_imports() -> None:
    code = (
        "import sys, rrm_ui.cli, rrm_ui.backends, rrm_ui.backends.openai_http, rrm_ui.engine.runner;"
        f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_only_config_reads_the_environment() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in PKG.rglob("*.py")
        if p.name != "config.py" and ("os.environ" in p.read_text() or "getenv(" in p.read_text())
    ]
    assert not offenders


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [f.name for f in dataclasses.fields(Settings) if f"`{f.name}`" not in doc]
    assert not missing, f"document these settings in docs/configuration.md: {missing}"


def test_settings_from_environment() -> None:
    env = {
        "RRM_UI_BACKEND": "openai",
        "RRM_UI_ENDPOINTS": "http://a/v1, http://b/v1",
        "RRM_UI_MAX_TOKENS": "4096",
        "RRM_UI_ENFORCE_EAGER": "yes",
        "HF_HUB_OFFLINE": "1",
    }
    s = Settings.from_env(env)
    assert s.backend == "openai" and s.endpoints == ("http://a/v1", "http://b/v1")
    assert s.max_tokens == 4096 and s.enforce_eager is True and s.hf_offline is True
    assert Settings.from_env({}).temperature == 0.6 and Settings.from_env({}).max_tokens == 8192


def test_bad_setting_names_the_variable() -> None:
    import pytest

    with pytest.raises(ValueError, match="RRM_UI_MAX_TOKENS"):
        Settings.from_env({"RRM_UI_MAX_TOKENS": "lots"})
