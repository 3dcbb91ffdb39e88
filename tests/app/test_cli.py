"""The ``weightscope`` command as a user meets it: ``python -m app.cli`` is the same command;
invalid settings and database failures are one line and exit 2 (never a traceback); bad
input to ``merge --out`` and ``zoo push`` is one line and exit 2; ``graph`` shows an input's
whole shape; ``predict`` (local, ``--server`` and ``Client.predict``) takes the reading of an
inferred architecture, and a local and a server answer print the same line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

import graphs
from app import cli as cli_module
from app.cli import app as cli
from app.client import Client
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "models/builtin/samples/digits-cnn-generalization/000000.safetensors"


def one_line_error(result, fragment: str = "") -> str:  # type: ignore[no-untyped-def]
    """The result is exit 2 with a single ``error:`` line on stderr (no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert fragment in lines[0], lines[0]
    return lines[0]


def run_module(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTSCOPE_")}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env=clean | {"PYTHONPATH": str(ROOT)} | (env or {}),
    )  # fmt: skip


@pytest.fixture
def sequential_cnn(tmp_path: Path) -> Path:
    """The sample's weights as a plain ``nn.Sequential`` state dict (no op graph): its
    architecture is inferred, and only ``activation=silu`` reads it as the sample."""
    tensors = graphs.load(SAMPLE).tensors
    names = {"conv1": "0", "conv2": "2", "head": "6"}
    state = {f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v.contiguous() for k, v in
             tensors.items()}  # fmt: skip
    path = tmp_path / "sequential.safetensors"
    save_file(state, str(path))
    return path


# --- python -m app.cli, settings and databases -----------------------------------------


def test_python_dash_m_runs_the_weightscope_command() -> None:
    helped = run_module("--help")
    assert helped.returncode == 0 and "predict" in helped.stdout and "zoo" in helped.stdout
    graph = run_module("graph", str(SAMPLE))
    assert graph.returncode == 0 and "parameter graph" in graph.stdout


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("WEIGHTSCOPE_PORT", "abc", "WEIGHTSCOPE_PORT"),
        ("WEIGHTSCOPE_DATABASE_URL", "not a url", "WEIGHTSCOPE_DATABASE_URL"),
        ("WEIGHTSCOPE_DATABASE_URL", "nosuchdb://x/y", "WEIGHTSCOPE_DATABASE_URL"),
        ("WEIGHTSCOPE_TRUSTED_HOSTS", "not json", "WEIGHTSCOPE_TRUSTED_HOSTS"),
        ("WEIGHTSCOPE_TENANT_QUOTAS", '{"a": {"stored_bytes": -1}}', "WEIGHTSCOPE_TENANT_QUOTAS"),
    ],
)
def test_invalid_settings_are_one_line_naming_the_setting(
    variable: str, value: str, named: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(variable, value)
    for command in (["db", "current"], ["db", "upgrade"], ["keys", "list"], ["serve"]):
        one_line_error(CliRunner().invoke(cli, command), named)


def test_main_reports_invalid_settings_of_any_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command reading ``Settings()`` itself still gets one line from ``main()``."""
    monkeypatch.setenv("WEIGHTSCOPE_MAX_BATCH", "0")
    monkeypatch.setattr(cli_module, "load_settings", lambda **_: Settings())
    monkeypatch.setattr(sys, "argv", ["weightscope", "db", "current"])
    with pytest.raises(SystemExit) as exited:
        cli_module.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: invalid setting max_batch")
    assert "WEIGHTSCOPE_MAX_BATCH" in err and "Traceback" not in err

    through_module = run_module("db", "current", env={"WEIGHTSCOPE_PORT": "abc"})
    assert through_module.returncode == 2 and "Traceback" not in through_module.stderr
    assert through_module.stderr.startswith("error: invalid setting port (WEIGHTSCOPE_PORT)")


def test_database_failures_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli_module, "WORKER_START_WAIT_S", 0.0)  # a worker waits for a restart
    unreachable = "postgresql+psycopg://someone:hunter2@127.0.0.1:9/nothing"
    monkeypatch.setenv("WEIGHTSCOPE_DATABASE_URL", unreachable)
    for command in (["db", "current"], ["db", "upgrade"], ["db", "downgrade", "base"],
                    ["keys", "list"], ["worker"]):  # fmt: skip
        line = one_line_error(CliRunner().invoke(cli, command), "127.0.0.1")
        assert "hunter2" not in line and "***" in line

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("WEIGHTSCOPE_DATABASE_URL", f"sqlite:///{blocked / 'db.sqlite'}")
    one_line_error(CliRunner().invoke(cli, ["db", "upgrade"]), "database sqlite:///")

    monkeypatch.setenv("WEIGHTSCOPE_DATABASE_URL", f"sqlite:///{tmp_path / 'ok.sqlite'}")
    one_line_error(CliRunner().invoke(cli, ["db", "downgrade", "nonsense"]), "nonsense")
    # a worker on a database nobody migrated says so instead of failing every poll
    one_line_error(CliRunner().invoke(cli, ["worker"]), "not head: run `weightscope db upgrade`")


def test_a_worker_waits_for_a_restarting_database(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg
    from sqlalchemy.exc import OperationalError

    import app.db
    from app.db import when_reachable

    monkeypatch.setattr(app.db.time, "sleep", lambda _: None)
    refused = [OperationalError("connect", {}, Exception("refused")),
               psycopg.OperationalError("the database system is shutting down")]

    def step() -> str:
        if refused:
            raise refused.pop(0)
        return "abc"

    assert when_reachable(step, wait_s=60) == "abc"
    refused[:] = [psycopg.OperationalError("refused")] * 2
    with pytest.raises(psycopg.OperationalError):  # past the wait: the caller's one-line error
        when_reachable(step, wait_s=0)


def test_a_psycopg_failure_is_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg
    import typer

    from app.cli_errors import database_errors

    with pytest.raises(typer.Exit) as exited, database_errors("postgresql://u:secret@h/db"):
        raise psycopg.OperationalError("connection refused\nmore detail")
    assert exited.value.exit_code == 2
    said = "error: database postgresql://u:***@h/db: connection refused\n"
    assert capsys.readouterr().err == said


# --- merge --out, zoo push, graph -------------------------------------------------------


def test_merge_out_that_cannot_be_written_is_refused_before_any_work(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "merged.safetensors"
    # the server is never reached: the --out check comes first
    for where in (["--server", "http://127.0.0.1:9"], []):
        result = CliRunner().invoke(
            cli, ["merge", str(SAMPLE), str(SAMPLE), "--out", str(missing), *where]
        )
        one_line_error(result, "no such directory")
    folder = tmp_path / "taken"
    folder.mkdir()
    result = CliRunner().invoke(
        cli, ["merge", str(SAMPLE), str(SAMPLE), "--out", str(folder), "--server", "http://x:9"]
    )
    one_line_error(result, "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert list(folder.iterdir()) == []


def test_client_download_writes_the_whole_file_or_nothing(tmp_path: Path) -> None:
    from app.client import WeightscopeError

    body = b"safetensors bytes"
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    with Client("http://ws", transport=transport) as client:
        target = tmp_path / "out.safetensors"
        assert client.download(1, target) == body and target.read_bytes() == body
        with pytest.raises(WeightscopeError, match="cannot write"):
            client.download(1, tmp_path / "missing" / "out.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]


def test_zoo_push_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    push = ["zoo", "push", "--server", "http://127.0.0.1:9"]
    one_line_error(CliRunner().invoke(cli, [*push, str(tmp_path / "missing")]), "not a zoo")
    one_line_error(CliRunner().invoke(cli, [*push, str(tmp_path)]), "not a zoo")
    (tmp_path / "zoo.json").write_text(json.dumps({"name": "z", "task": "classification"}))
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"file": "a.safetensors"}) + "\n")
    one_line_error(CliRunner().invoke(cli, [*push, str(tmp_path)]), "row 1")
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"file": "a.safetensors", "target": 1}))
    one_line_error(CliRunner().invoke(cli, [*push, str(tmp_path)]), "missing")
    (tmp_path / "a.safetensors").write_bytes(SAMPLE.read_bytes())
    one_line_error(CliRunner().invoke(cli, [*push, str(tmp_path)]), "cannot reach")


def test_graph_prints_an_input_as_its_whole_shape(tmp_path: Path) -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.ReLU(), nn.Linear(6, 10))
    path = tmp_path / "mlp.safetensors"
    graphs.save(mlp, path, torch.zeros(1, 1, 8, 8))
    result = CliRunner().invoke(cli, ["graph", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    (name,) = graphs.load(path).architecture.summary()["inputs"]
    assert f"  {name}: input 1×8×8 (fixed)" in lines
    assert f"  {name}: 8 input (fixed)" not in lines

    conv = CliRunner().invoke(cli, ["graph", str(SAMPLE)])
    assert "  x: input 1×8×8 (fixed)" in conv.stdout.splitlines()


# --- predict: the reading of an inferred architecture, one line for local and server ----


def test_local_predict_takes_activation_and_input_shape(sequential_cnn: Path) -> None:
    runner = CliRunner()
    sample = runner.invoke(cli, ["predict", str(SAMPLE)])
    assert sample.exit_code == 0, sample.output
    guessed = runner.invoke(cli, ["predict", str(sequential_cnn)])
    assert guessed.exit_code == 0 and guessed.stdout != sample.stdout  # read as ReLU
    settled = runner.invoke(
        cli, ["predict", str(sequential_cnn), "--activation", "silu", "--input-shape", "1,8,8"]
    )
    assert settled.exit_code == 0, settled.output
    assert settled.stdout == sample.stdout
    answers = json.loads(runner.invoke(
        cli, ["predict", str(sequential_cnn), "--activation", "silu", "--input-shape", "1,8,8",
              "--json"],
    ).stdout)  # fmt: skip
    # what was given is no longer assumed (padding and pooling stay listed: nothing sets them)
    given = {"activation", "input_shape"}
    assert all(not given & answer["assumptions"].keys() for answer in answers)

    one_line_error(runner.invoke(cli, ["predict", str(sequential_cnn), "--input-shape", "1,x"]),
                   "--input-shape")  # fmt: skip
    one_line_error(runner.invoke(cli, ["predict", str(SAMPLE), "--activation", "silu"]),
                   "inferred architecture only")  # fmt: skip


def test_local_and_server_predictions_print_the_same_line(
    server: str, sequential_cnn: Path
) -> None:
    runner = CliRunner()
    local = runner.invoke(cli, ["predict", str(SAMPLE)])
    remote = runner.invoke(cli, ["predict", str(SAMPLE), "--server", server])
    assert local.exit_code == 0 and remote.exit_code == 0, (local.output, remote.output)
    assert local.stdout == remote.stdout
    assert "\ndigits-cnn-generalization (1.0+" in local.stdout  # the version, in both

    settled = ["--activation", "silu", "--input-shape", "1,8,8"]
    remote_settled = runner.invoke(
        cli, ["predict", str(sequential_cnn), "--server", server, *settled]
    )
    assert remote_settled.exit_code == 0, remote_settled.output
    assert remote_settled.stdout == local.stdout
    # a reading the service refuses (these bytes are stored, read otherwise): one line
    one_line_error(runner.invoke(cli, ["predict", str(SAMPLE), "--server", server,
                                       "--activation", "silu"]), "activation")  # fmt: skip


def test_client_predict_and_upload_take_the_reading_and_file_objects(
    server: str, sequential_cnn: Path
) -> None:
    with Client(server) as client:
        expected = [a.value for a in client.predict(SAMPLE)]
        with open(sequential_cnn, "rb") as file:
            answers = client.predict(file, activation="silu", input_shape=(1, 8, 8))
        assert [a.value for a in answers] == expected
        named = client.predict(
            io.BytesIO(sequential_cnn.read_bytes()), "digits-cnn-generalization",
            activation="silu", input_shape=(1, 8, 8),
        )  # fmt: skip
        # the built-ins answer in name order: the backdoor classifier (no value) comes first
        assert [a.value for a in named] == [v for v in expected if v is not None][:1]

        with open(SAMPLE, "rb") as file:
            stored = client.upload(file)
        assert stored.sha256 == client.upload(SAMPLE).sha256
        assert stored.filename == SAMPLE.name
        assert client.upload(io.BytesIO(SAMPLE.read_bytes())).id == stored.id
        with open(SAMPLE, encoding="latin-1") as text, pytest.raises(TypeError, match="'rb'"):
            client.upload(text)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'rb'"):
            client.upload(io.StringIO("text"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="stored already"):
            client.predict(stored.id, activation="silu")


def test_client_sends_the_reading_as_the_upload_query() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500, json={"title": "stop", "detail": "seen"})

    with Client("http://ws", transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(Exception, match="seen"):
            client.upload(io.BytesIO(b"x"), activation="leaky_relu(0.2)", input_shape=[1, 8, 8])
        with pytest.raises(Exception, match="seen"):
            client.predict(b"x", "m", activation="silu")
    assert seen[0].url.path == "/v1/checkpoints"
    assert dict(seen[0].url.params) == {"activation": "leaky_relu(0.2)", "input_shape": "1,8,8"}
    assert seen[1].url.path == "/v1/checkpoints"  # the prediction route takes no reading
    assert dict(seen[1].url.params) == {"activation": "silu"}
