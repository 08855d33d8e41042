"""Presets shipped with the package: training configs and study specs, addressable by name.

The repository's ``configs/*.yaml`` and ``studies/*.yaml`` are the one copy of each preset;
``rsray/configs`` and ``rsray/studies`` point at them and are installed as package data, so an
installed rsray (no checkout) still has them::

    rsray study sen12ms_resnet --check        # = studies/sen12ms_resnet.yaml
    rsray train --config globe_progressive    # = configs/globe_progressive.yaml
    rsray presets                             # lists both kinds

Wherever a config or spec is expected, an existing file path wins; otherwise the argument is
looked up as a preset name (with or without ``.yaml``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from rsray.errors import ConfigError

KINDS: dict[str, str] = {"config": "configs", "study": "studies"}
"""Preset kind -> folder of the ``rsray`` package that holds it."""

_WHAT = {"config": "config file", "study": "study spec"}


def preset_dir(kind: str) -> Path:
    """The installed folder of one kind of preset (``config`` or ``study``)."""
    if kind not in KINDS:
        raise ValueError(f"preset kind {kind!r}: one of {', '.join(KINDS)}")
    return Path(str(files("rsray") / KINDS[kind]))


def list_presets(kind: str) -> list[str]:
    """Names (file stems) of the presets of ``kind``, sorted."""
    folder = preset_dir(kind)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def preset_path(kind: str, name: str) -> Path:
    """The file of preset ``name`` (``ConfigError`` listing the presets when there is none)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = preset_dir(kind) / f"{stem}.yaml"
    if "/" in stem or not path.is_file():
        import difflib

        close = difflib.get_close_matches(stem, list_presets(kind), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{_WHAT[kind]} {name}: no such file and no preset of that name"
                          f"{hint}; presets: {', '.join(list_presets(kind))}")
    return path


def resolve(kind: str, name_or_path: str | Path) -> Path:
    """An existing file path as it is, else the preset of that name.

    Raises:
        ConfigError: neither a file nor a preset; the message lists the presets of ``kind``.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    if "/" in text or path.suffix not in ("", ".yaml"):
        raise ConfigError(f"{_WHAT[kind]} {text}: not found (a file path, or one of the "
                          f"presets: {', '.join(list_presets(kind))})")
    return preset_path(kind, text)


__all__ = ["KINDS", "list_presets", "preset_dir", "preset_path", "resolve"]
