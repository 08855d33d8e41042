"""FLAIR #2's optional aerial metadata JSON (acquisition date, time, camera, position per patch).

:func:`load_aerial_metadata` returns the usable entries and, per patch, why an entry is not.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

from rsray.errors import RsrayError

__all__ = [
    "load_aerial_metadata",
]


# --------------------------------------------------------------------------------------------
# Aerial metadata (optional)
# --------------------------------------------------------------------------------------------

_TIME_RE = re.compile(r"^(\d{1,2})h(\d{2})$")


def load_aerial_metadata(path: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Parse ``flair-2_aerial_metadata.json`` (FLAIR-1 has the same schema).

    Returns ``(entries, problems)``: ``"IMG_<id>"`` -> ``{domain, zone, x, y, z, date, time,
    camera}`` for the valid entries, and key -> reason for the invalid ones.

    Raises:
        RsrayError: the file is not JSON or not an object of objects.
    """
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RsrayError(f"{path}: aerial metadata is not readable JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise RsrayError(f"{path}: aerial metadata must be a JSON object keyed by IMG_<id>")
    entries: dict[str, dict[str, Any]] = {}
    problems: dict[str, str] = {}
    for key, v in raw.items():
        try:
            if not isinstance(v, dict):
                raise ValueError("entry is not an object")
            x, y = float(v["patch_centroid_x"]), float(v["patch_centroid_y"])
            z = float(v.get("patch_centroid_z", float("nan")))
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError("centroid is not finite")
            date = dt.date.fromisoformat(str(v["date"]))
            time = str(v.get("time", ""))
            if time and not _TIME_RE.match(time):
                raise ValueError(f"time {time!r} is not like 08h06")
            entries[str(key)] = {"domain": str(v["domain"]), "zone": str(v["zone"]),
                                 "x": x, "y": y, "z": z, "date": date.isoformat(),
                                 "time": time, "camera": str(v.get("camera", ""))}
        except KeyError as exc:
            problems[str(key)] = f"aerial metadata entry lacks {exc.args[0]!r}"
        except (TypeError, ValueError) as exc:
            problems[str(key)] = f"aerial metadata entry is invalid: {exc}"
    return entries, problems
