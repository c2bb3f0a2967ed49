"""Start the rrm-ui web app: ``python app.py [options]`` (the options of ``rrm-ui serve --help``).

The first run sets up ``.venv`` (scripts/setup.sh: PyTorch, vLLM, the app; idempotent) and
restarts itself inside it; later runs start at once. Then it serves http://127.0.0.1:7860 on
the SQLite database db/rrm_ui.db.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()


if __name__ == "__main__":
    if not in_venv():
        subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], check=True)
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
    from rrm_ui.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
