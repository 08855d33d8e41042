"""The spatial group of each sample per dataset, and the provenance a study records."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rsray.data.groups import GROUP_RULES, group_rule, shard_columns


def test_group_per_dataset() -> None:
    batch = {
        "patch_id": np.array(["a", "b"], dtype=object),
        "meta_scene": np.array(["spring_15", "spring_15"], dtype=object),
        "meta_s1_patch": np.array(["S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_32",
                                   "S1B_IW_GRDH_1SDV_20171222T064238_29SND_0_4"], dtype=object),
        "meta_tile": np.array(["T33UUP", "T29SND"], dtype=object),
        "meta_domain": np.array(["D004_2021", "D004_2021"], dtype=object),
        "meta_zone": np.array(["Z8_NF", "Z9_AB"], dtype=object),
        "meta_site_id": np.array(["123", "456"], dtype=object),
    }
    cols = list(batch)
    got = {name: group_rule(name, cols).values(batch).tolist() for name in GROUP_RULES}
    assert got == {"sen12ms": ["spring_15", "spring_15"], "bigearthnet": ["33UUP", "29SND"],
                   "bigearthnet_v2": ["T33UUP", "T29SND"],
                   "flair2": ["D004_2021/Z8_NF", "D004_2021/Z9_AB"], "globe": ["123", "456"]}


def test_group_from_arrow_and_fallbacks(tmp_path) -> None:
    table = pa.table({"patch_id": ["x", "y"], "meta_region": ["north", None]})
    pq.write_table(table, tmp_path / "s.parquet")
    cols = shard_columns([str(tmp_path / "s.parquet")])
    assert cols == ["patch_id", "meta_region"]
    rule = group_rule("my_dataset", cols)  # no rule of its own: the first known column
    assert rule is not None and rule.columns == ("meta_region",)
    assert rule.values(table).tolist() == ["north", ""]
    # a dataset whose rule's columns are missing (an old shard set): no group
    assert group_rule("sen12ms", ["patch_id", "meta_season"]) is None
    assert group_rule("bigearthnet", ["patch_id"]) is None
    assert shard_columns([]) == []


def test_provenance_records_versions_and_this_checkout() -> None:
    import subprocess
    from pathlib import Path

    from rsray.study.provenance import environment, git_commit

    env = environment()
    assert {"rsray", "torch", "ray", "timm", "scipy"} <= set(env["packages"])
    repo = Path(__file__).resolve().parents[1]
    if (repo / ".git").exists():
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert env["git_commit"].removesuffix("+dirty") == head
    # a folder that is not rsray's checkout (a wheel's site-packages) has no commit of ours
    assert git_commit(repo / "tests") is None
