"""Merged checkpoints: lineage, BatchNorm status, many-model merges and the CLI."""

import _merging_models as M
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import graphs
import merging
from app.cli import app


def _permuted_copies(family: str, n: int, seed: int = 0):
    model, x = M.family(family, 1, seed)
    a = M.checkpoint(model, x)
    nmap = graphs.neuron_map(a.architecture)
    copies = [graphs.apply_permutation(a, graphs.sample_permutations(
        nmap, torch.Generator().manual_seed(seed + i))) for i in range(n)]
    return a, copies, x


def test_merging_a_network_with_its_permutation_gives_it_back():
    a, (b,), _ = _permuted_copies("resnet", 1)
    result = merging.merge(a, b, lam=0.3)
    for name, t in a.tensors.items():
        torch.testing.assert_close(result.checkpoint.tensors[name], t)
    record = merging.lineage(result.checkpoint)
    assert record["parents"] == [merging.checkpoint_sha256(a), merging.checkpoint_sha256(b)]
    assert record["method"] == "weight" and record["lam"] == 0.3
    assert record["bn_stats"] == "stale"  # BatchNorm network merged without data


def test_lineage_survives_a_file_round_trip(tmp_path, mlp_pair, digits_flat):
    a, b = mlp_pair
    result = merging.merge(a, b, method="activation", data=digits_flat[1], parents=["A", "B"])
    graphs.save_checkpoint(result.checkpoint, tmp_path / "c.safetensors")
    loaded = graphs.load(tmp_path / "c.safetensors")
    assert loaded.architecture == a.architecture
    assert merging.lineage(loaded) == {**merging.lineage(result.checkpoint)}
    assert merging.lineage(loaded)["bn_stats"] == "none"
    assert merging.lineage(a) is None


def test_merge_resets_batchnorm_on_data(cnn_bn_pair, digits_img):
    a, b = cnn_bn_pair
    test = digits_img[1]
    stale = merging.merge(a, b)
    reset = merging.merge(a, b, data=test)
    assert reset.bn_stats == "reset" and stale.bn_stats == "stale"
    acc = {k: merging.evaluate(merging.forward.load_module(r.checkpoint, "cpu"), test)[1]
           for k, r in (("stale", stale), ("reset", reset))}
    assert acc["reset"] > acc["stale"]


def test_merge_many_of_permuted_copies_is_the_original():
    _, copies, _ = _permuted_copies("transformer", 3, seed=4)
    result = merging.merge_many(copies, rounds=3)
    reference = copies[0]
    for name, t in reference.tensors.items():
        torch.testing.assert_close(result.checkpoint.tensors[name], t)
    assert result.rounds == 2  # round 2 changes nothing
    record = merging.lineage(result.checkpoint)
    assert len(record["parents"]) == 3 and record["lam"] == pytest.approx([1 / 3] * 3)


def test_merge_many_trained_models_beats_naive_average(mlp_pair, digits_flat):
    a, b = mlp_pair
    test = digits_flat[1]
    many = merging.merge_many([a, b], data=test)
    naive = merging.merge(a, b, method="none")
    loss = {k: merging.evaluate(merging.forward.load_module(c, "cpu"), test)[0]
            for k, c in (("many", many.checkpoint), ("naive", naive.checkpoint))}
    assert loss["many"] < loss["naive"]


def test_cli_merge_prints_the_barrier_table(tmp_path, cnn_bn_pair, digits_img):
    a, b = cnn_bn_pair
    x, y = digits_img[1]
    graphs.save_checkpoint(a, tmp_path / "a.safetensors")
    graphs.save_checkpoint(b, tmp_path / "b.safetensors")
    save_file({"x": x[:200].contiguous(), "y": y[:200].contiguous()}, tmp_path / "d.safetensors")
    out = tmp_path / "c.safetensors"
    runner = CliRunner()
    res = runner.invoke(app, ["merge", str(tmp_path / "a.safetensors"),
                              str(tmp_path / "b.safetensors"), "--data",
                              str(tmp_path / "d.safetensors"), "--out", str(out)],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "naive" in res.output and "aligned" in res.output and "barrier" in res.output
    record = merging.lineage(graphs.load(out))
    assert record["parents"] == ["a.safetensors", "b.safetensors"]
    assert record["bn_stats"] == "reset"
    bad = runner.invoke(app, ["merge", str(tmp_path / "a.safetensors"),
                              str(tmp_path / "b.safetensors"), "--method", "magic",
                              "--out", str(out)])
    assert bad.exit_code == 2 and "unknown method" in bad.output
