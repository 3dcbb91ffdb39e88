"""Zoo directory -> trained metanetwork -> shipped files -> batched prediction."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _nets import checkpoint

import graphs
from models import MetanetConfig, OutOfDomainError, TrainConfig, ship, train_on_zoo
from models.data import read_zoo, zoo_graphs
from models.registry import MetanetworkError, available, load_from


def write_zoo(path: Path, task: str, n: int = 60) -> Path:
    """MLPs whose weight scale sets the target (accuracy) or the label (scale class)."""
    path.mkdir()
    rows = []
    for i in range(n):
        c = checkpoint("mlp", seed=i, width=3 + i % 3)
        s = 0.4 + 0.15 * (i % 8)
        c.tensors = {k: v * s for k, v in c.tensors.items()}
        graphs.save_checkpoint(c, path / f"{i:06d}.safetensors")
        split = "train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test")
        target = int(i % 8 >= 4) if task == "classification" else float(s / 1.5)
        rows.append({"file": f"{i:06d}.safetensors", "split": split, "target": target})
    (path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    info = {"name": "toy", "task": "classification" if task == "classification"
            else "regression", "command": "toy", "seed": 3}
    (path / "zoo.json").write_text(json.dumps(info))
    return path


def small(task: str) -> tuple[MetanetConfig, TrainConfig]:
    mcfg = MetanetConfig(task=task, num_outputs=2 if task == "classification" else 1,
                         hidden=16, edge_hidden=8, layers=2, fourier=4)
    return mcfg, TrainConfig(epochs=25, batch_size=12, lr=3e-3, patience=25, seed=0)


def test_generalization_train_ship_predict(tmp_path: Path) -> None:
    zoo_dir = write_zoo(tmp_path / "zoo", "generalization")
    mcfg, tcfg = small("generalization")
    model, card, result = train_on_zoo(zoo_dir, "toy-gen", mcfg, tcfg, progress=False)
    assert card["metrics"]["test"]["tau_b"] > 0.3
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert 0 < card["conformal"]["half_width"] < 1
    assert 0 <= card["conformal"]["test_coverage"] <= 1
    assert card["domain"]["io"] and card["zoo"]["splits"] == {"train": 36, "val": 12,
                                                              "test": 12}
    assert len(result.history) == card["epochs_run"]

    out = tmp_path / "builtin"
    ship(model, card, zoo_dir, out, sample=5)
    assert available(out) == ["toy-gen"]
    net = load_from(out, "toy-gen", torch.device("cpu"))
    shipped = json.loads((out / "toy-gen.json").read_text())
    files = [out / "samples" / "toy-gen" / f["file"] for f in shipped["check"]["files"]]
    preds = net.predict(files)
    expected = [f["prediction"][0] for f in shipped["check"]["files"]]
    np.testing.assert_allclose([p.value for p in preds], expected, atol=1e-5)
    p = preds[0]
    assert p.in_domain and p.interval[0] <= p.value <= p.interval[1] and p.coverage == 0.9


def test_out_of_domain_is_refused_unless_forced(tmp_path: Path) -> None:
    zoo_dir = write_zoo(tmp_path / "zoo", "classification", n=30)
    mcfg, tcfg = small("classification")
    tcfg.epochs = 2
    model, card, _ = train_on_zoo(zoo_dir, "toy-cls", mcfg, tcfg, progress=False)
    assert card["labels"] == ["0", "1"]
    out = tmp_path / "builtin"
    ship(model, card, zoo_dir, out, sample=2)
    net = load_from(out, "toy-cls", torch.device("cpu"))
    cnn = checkpoint("cnn")
    with pytest.raises(OutOfDomainError, match=r"outside the domain.*ops never seen"):
        net.predict([checkpoint("mlp", seed=1), cnn])
    wide = checkpoint("mlp", seed=1, width=40)
    with pytest.raises(OutOfDomainError, match="training networks had at most"):
        net.predict([wide])
    answers = net.predict([checkpoint("mlp", seed=1), cnn], force=True)
    assert [a.in_domain for a in answers] == [True, False]
    assert answers[1].domain_issues and answers[1].label in card["labels"]
    assert sum(answers[0].probabilities.values()) == pytest.approx(1.0)
    with pytest.raises(MetanetworkError, match="no metanetwork 'nope'"):
        load_from(out, "nope")


def test_graph_cache_is_reused_and_keyed_by_manifest(tmp_path: Path) -> None:
    zoo_dir = write_zoo(tmp_path / "zoo", "generalization", n=10)
    zoo = read_zoo(zoo_dir)
    first = zoo_graphs(zoo)
    assert len(list(zoo_dir.glob(".metanet-graphs-*.pt"))) == 1
    again = zoo_graphs(zoo)
    assert all(torch.equal(a.edge_attr, b.edge_attr) and a.y == b.y
               for a, b in zip(first, again, strict=True))
    with (zoo_dir / "manifest.jsonl").open("a") as f:
        f.write("\n")
    zoo_graphs(read_zoo(zoo_dir))
    assert len(list(zoo_dir.glob(".metanet-graphs-*.pt"))) == 2
    with pytest.raises(FileNotFoundError, match="is not a zoo"):
        read_zoo(tmp_path)


def test_named_classes_come_from_zoo_json(tmp_path: Path) -> None:
    """A zoo that names its classes (digits-backdoor: clean / backdoored) gets them on the
    card and in predictions; a class count that disagrees with the config is refused."""
    from models.fit import default_config

    zoo_dir = write_zoo(tmp_path / "zoo", "classification", n=20)
    info = json.loads((zoo_dir / "zoo.json").read_text())
    (zoo_dir / "zoo.json").write_text(json.dumps({**info, "classes": ["clean", "backdoored"]}))
    mcfg, tcfg = small("classification")
    tcfg.epochs = 1
    model, card, _ = train_on_zoo(zoo_dir, "toy-bd", mcfg, tcfg, progress=False)
    assert card["labels"] == ["clean", "backdoored"]
    out = tmp_path / "builtin"
    ship(model, card, zoo_dir, out, sample=3)
    p = load_from(out, "toy-bd", torch.device("cpu")).predict([zoo_dir / "000000.safetensors"])
    assert p[0].label in ("clean", "backdoored")
    assert set(p[0].probabilities) == {"clean", "backdoored"}
    with pytest.raises(ValueError, match="2 classes"):
        train_on_zoo(zoo_dir, "toy-bd", MetanetConfig(task="classification", num_outputs=3,
                     hidden=16, edge_hidden=8, layers=2, fourier=4), tcfg, progress=False)
    cfg = default_config("classification", "digits-backdoor")
    assert (cfg.num_outputs, cfg.max_kernel, cfg.query_side) == (2, 9, 8) and cfg.triggers > 0
    assert default_config("classification").num_outputs == 10


def test_a_trigger_search_metanetwork_trains_ships_and_answers(tmp_path: Path) -> None:
    """The search runs once per zoo (a cache file beside the graphs), and the shipped model
    answers through the registry (inference mode) with the search run on the new input."""
    zoo_dir = write_zoo(tmp_path / "zoo", "classification", n=20)
    _, tcfg = small("classification")
    tcfg.epochs = 1
    mcfg = MetanetConfig(task="classification", num_outputs=10, hidden=8, edge_hidden=4,
                         layers=0, fourier=2, layer_stats=True, triggers=2)
    model, card, _ = train_on_zoo(zoo_dir, "toy-triggers", mcfg, tcfg, progress=False)
    assert len(list(zoo_dir.glob(".trigger-features-*.pt"))) == 1
    out = tmp_path / "builtin"
    ship(model, card, zoo_dir, out, sample=3)
    loaded = load_from(out, "toy-triggers", torch.device("cpu"))
    assert loaded.model.config.triggers == 2
    p = loaded.predict([zoo_dir / "000000.safetensors"])
    assert abs(sum(p[0].probabilities.values()) - 1) < 1e-5
