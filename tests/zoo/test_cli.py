import json
from pathlib import Path

from typer.testing import CliRunner

from app.cli import app


def test_zoo_build_then_info(fast_settings: None, tmp_path: Path) -> None:
    out = tmp_path / "z"
    args = ["zoo", "build", "digits-cnn", "--size", "3", "--seed", "5", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--group-size", "2"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output[result.output.index("{") :])
    assert stats["name"] == "digits-cnn" and stats["checkpoints"] == 3
    info = CliRunner().invoke(app, ["zoo", "info", str(out)])
    assert info.exit_code == 0 and json.loads(info.output) == stats


def test_zoo_build_refuses_unknown_names_and_non_zoo_dirs(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["zoo", "build", "imagenet", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown zoo" in result.output
    assert CliRunner().invoke(app, ["zoo", "info", str(tmp_path)]).exit_code == 2
