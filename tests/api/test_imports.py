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


LOADED = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(module: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", LOADED, module], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_the_dashboard_and_the_api_load_neither_the_other_nor_the_store_torch() -> None:
    ui, api, store = _loaded("app.ui"), _loaded("app.api"), _loaded("app.store")
    assert "app.ui" in ui and [m for m in ui if m.startswith("app.api.routes")] == []
    assert "app.api" in api and [m for m in api if m.startswith("app.ui")] == []
    assert "app.store.jobs" in store and "torch" not in store
