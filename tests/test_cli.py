"""The rsray command: clear one-line errors, listing, report."""

import csv
import json

from rsray.cli import main


def test_models_lists_registry(capsys):
    assert main(["models", "test_*"]) == 0
    out = capsys.readouterr().out.split()
    assert "test_progressive_fusion" in out and all(n.startswith("test_") for n in out)


def test_prepare_missing_folder_is_a_clear_error(tmp_path, capsys):
    rc = main(["prepare", "bigearthnet", "--s2-root", str(tmp_path / "nope-s2"),
               "--s1-root", str(tmp_path / "nope-s1"), "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("rsray: error:") and "nope-s" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_train_refuses_missing_shards(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path / "missing"),
               "--set", "model.name=test_progressive_fusion"])
    assert rc == 2
    assert "no shard set here" in capsys.readouterr().err


def test_bad_override_names_field(capsys):
    assert main(["train", "--set", "optim.name=sgd"]) == 2
    assert "optim.name: 'sgd' is not allowed" in capsys.readouterr().err


def test_report(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "leaderboard.csv: not found" in capsys.readouterr().err
    with open(tmp_path / "leaderboard.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["rank", "trial"], [1, "abc"]])
    (tmp_path / "best.json").write_text(json.dumps({"trial": "abc"}))
    assert main(["report", str(tmp_path)]) == 0
    assert "abc" in capsys.readouterr().out
