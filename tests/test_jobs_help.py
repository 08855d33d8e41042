"""Every job script answers ``--help`` from any folder, without starting Ray.

Jobs are thin wrappers over rsray's own parsers; a flag clash between a job's own flags and
the shared run flags (``--out``, ``--name``...) makes argparse raise at parser construction,
so even ``--help`` fails. Each job runs in a subprocess from a temporary folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

JOBS = sorted((Path(__file__).resolve().parents[1] / "jobs").glob("*.py"))


def test_there_are_jobs():
    assert len(JOBS) >= 5, JOBS


@pytest.mark.parametrize("job", JOBS, ids=[j.stem for j in JOBS])
def test_job_help(job: Path, tmp_path: Path):
    proc = subprocess.run([sys.executable, str(job), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
    assert not (tmp_path / "rsray_results").exists()
