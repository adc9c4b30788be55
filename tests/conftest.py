"""Shared fixtures: a plugin host per test, a throw-away working folder, the repo root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dgm.testing import dgm_host as host  # noqa: F401 - dgm.testing's fixture, as `host`

REPO = Path(__file__).resolve().parents[1]

collect_ignore = ["plugin_projects"]  # third-party projects with their own test suites


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test with a temporary current folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def dgm_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real ``dgm`` command in a child process."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONHASHSEED", "0")
    return subprocess.run([sys.executable, "-m", "dgm", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def fit_for_epochs(family, data, epochs: int, lr: float = 3e-3, batch_size: int = 64) -> None:
    """Train ``family`` on ``data`` with Adam for a few epochs, without the Trainer: for
    tests of what a briefly trained model has learnt. Leaves it in eval mode."""
    import torch

    optimizer = torch.optim.Adam(family.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True)
    for _ in range(epochs):
        for batch in loader:
            loss, _ = family.loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    family.eval()
