"""The service scripts never start in, and so never wipe, a folder they did not make."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("script", "variable"), [("kafka", "KAFKA_DATA_DIR"), ("mlflow", "MLFLOW_DATA_DIR")], ids=["kafka", "mlflow"]
)
def test_a_start_in_a_folder_of_someone_else_s_is_refused_and_leaves_it_whole(
    tmp_path: Path, script: str, variable: str
) -> None:
    """``reset`` wipes the folder a start used: a start in a folder holding other files made it the script's, and
    the next reset deleted them."""
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "important.txt").write_text("keep me")
    with socket.socket() as taken:  # were the check gone, the start would stop at a taken port, not start a server
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = {
            **os.environ,
            variable: str(folder),
            "KAFKA_PORT": port,
            "KAFKA_CONTROLLER_PORT": port,
            "MLFLOW_PORT": port,
        }
        started = subprocess.run(
            [ROOT / "scripts" / script, "start"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert started.returncode == 1, started.stdout + started.stderr
    assert "did not make" in started.stderr and str(folder) in started.stderr
    reset = subprocess.run(
        [ROOT / "scripts" / script, "reset"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert reset.returncode == 1, reset.stdout + reset.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["important.txt"]
