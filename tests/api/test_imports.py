"""The API process plans jobs with aam_core's torch-free planner and never loads the training
code or scikit-learn (3.2 s of imports and the memory they hold, in every API process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CODE = """
import json, sys
from app.main import create_app
from app.settings import Settings

create_app(Settings(data_dir=sys.argv[1]))
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("aam_core", "sklearn")))))
"""


def test_creating_the_app_loads_no_training_code(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path)], capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout.splitlines()[-1])
    assert [m for m in loaded if m.startswith(("aam_core.train", "sklearn"))] == []
    assert "aam_core.plan.planner" in loaded  # job submissions are planned by aam_core
