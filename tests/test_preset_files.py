"""Presets ship with the package (configs/ and studies/ are the one copy) and answer to names."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rsray.config import load_config
from rsray.errors import ConfigError
from rsray.presets import list_presets, preset_path, resolve

REPO = Path(__file__).resolve().parents[1]


def test_presets_are_the_repository_files():
    assert list_presets("config") == sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    assert list_presets("study") == sorted(p.stem for p in (REPO / "studies").glob("*.yaml"))
    for name in list_presets("study"):
        assert preset_path("study", name).read_bytes() == \
            (REPO / "studies" / f"{name}.yaml").read_bytes()


def test_wheel_ships_every_preset(tmp_path):
    """A wheel built from the repository holds configs/*.yaml and studies/*.yaml, byte-equal."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("rsray", "configs", "studies"):
        shutil.copytree(REPO / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not installed in this interpreter")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("rsray-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n: zf.read(n) for n in zf.namelist()
                   if n.startswith(("rsray/configs/", "rsray/studies/")) and n.endswith(".yaml")}
    repo = {f"rsray/{kind}/{p.name}": p.read_bytes()
            for kind in ("configs", "studies") for p in (REPO / kind).glob("*.yaml")}
    assert shipped == repo


def test_config_by_name_equals_config_by_path():
    by_name = load_config("globe_progressive")
    assert by_name == load_config(REPO / "configs" / "globe_progressive.yaml")
    assert load_config("globe_progressive.yaml") == by_name


def test_unknown_preset_lists_the_names():
    with pytest.raises(ConfigError) as exc:
        load_config("globe_progresive")
    text = str(exc.value)
    assert "did you mean 'globe_progressive'" in text and "sen12ms_resnet" in text
    assert "\n" not in text
    with pytest.raises(ConfigError, match="not found"):
        resolve("study", "studies/nope.yaml")


def test_presets_command_lists_both_kinds(capsys):
    from rsray.cli import main

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in [*list_presets("config"), *list_presets("study")]:
        assert f"  {name} " in out
    assert "demo" in list_presets("study")
