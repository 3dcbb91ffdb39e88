"""``weightscope.Client`` against the real app over HTTP (uvicorn on a loopback port, the
embedded worker, SQLite): every method, lists followed to their end, errors as typed
exceptions built from problem+json."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch
from conftest import Files
from safetensors.torch import save as safetensors_save

import graphs
import weightscope
from weightscope import (
    CheckpointOut,
    Client,
    Conflict,
    InspectResult,
    InvalidRequest,
    JobFailed,
    JobOut,
    MergeResult,
    NotFound,
    OutOfDomain,
    PredictionResult,
    Unreachable,
)

NAME = "tiny-digits"


def raw_checkpoint(seed: int) -> bytes:
    """A small safetensors file without an architecture (distinct bytes per seed)."""
    return safetensors_save({"w": torch.full((3,), float(seed))})


def test_checkpoints_datasets_and_inspect(server: str, files: Files, tmp_path: Path) -> None:
    with Client(server) as client:
        stored = client.upload(files.net_a)
        assert isinstance(stored, CheckpointOut) and stored.filename == files.net_a.name
        assert client.upload(files.net_a.read_bytes(), filename="again").id == stored.id
        assert client.get_checkpoint(stored.id) == stored
        assert [c.id for c in client.checkpoints(format="safetensors")] == [stored.id]
        assert client.download(stored.id, tmp_path / "copy.safetensors")[:8]
        assert graphs.load(tmp_path / "copy.safetensors").architecture is not None

        seen: list[JobOut] = []
        inspected = client.inspect(stored.id, progress=seen.append)
        assert isinstance(inspected, InspectResult)
        assert inspected.parameter_count == stored.parameter_count
        assert seen[-1].status.value == "succeeded" and seen[-1].progress == 1.0

        dataset = client.upload_dataset(files.dataset)
        assert client.get_dataset(dataset.id) == dataset
        assert [d.id for d in client.datasets()] == [dataset.id]

        spare = client.upload(raw_checkpoint(0), filename="spare.safetensors")
        client.delete_checkpoint(spare.id)
        with pytest.raises(NotFound) as missing:
            client.get_checkpoint(spare.id)
        assert missing.value.status == 404 and missing.value.title == "Not Found"
        assert missing.value.slug == "not-found" and str(spare.id) in missing.value.detail


def test_predictions(server: str, files: Files) -> None:
    with Client(server) as client:
        (card,) = client.metanetworks()
        assert card.name == NAME and client.get_metanetwork(NAME).card["task"] == card.task

        events: list[str] = []
        (answer,) = client.predict(files.net_a, progress=lambda job: events.append(job.status))
        assert isinstance(answer, PredictionResult) and answer.in_domain
        assert answer.label in card.labels and events[-1] == "succeeded"
        (named,) = client.predict(files.net_a, NAME)  # upload-and-ask in one request
        (by_id,) = client.predict(answer.checkpoint_id, NAME)
        assert named.label == by_id.label == answer.label

        with pytest.raises(OutOfDomain) as outside:
            client.predict(files.other_io)
        assert NAME in outside.value.reasons
        (forced,) = client.predict(files.other_io, force=True)
        assert forced.in_domain is False and forced.domain_issues
        with pytest.raises(JobFailed) as failed:  # refused by the worker's size check
            client.predict(files.wide, NAME)
        assert failed.value.job.status.value == "failed"
        assert "outside the domain" in str(failed.value.job.error)

        listed = list(client.predictions(metanetwork=NAME))
        assert len(listed) == 4 and client.get_prediction(listed[0].id) == listed[0]
        assert {p.checkpoint_id for p in client.predictions(checkpoint_id=by_id.checkpoint_id)} == {
            by_id.checkpoint_id
        }


def test_merges_and_jobs(server: str, files: Files, tmp_path: Path) -> None:
    with Client(server) as client:
        progress: list[float] = []
        merge = client.merge(
            [files.net_a, files.net_b], dataset=files.dataset, curve_points=5,
            progress=lambda job: progress.append(job.progress),
        )  # fmt: skip
        assert isinstance(merge.result, MergeResult) and merge.result.curves is not None
        assert merge.result.curves.aligned is not None
        assert len(merge.result.curves.aligned.lambdas) == 5
        assert merge.result.barrier is not None and progress[-1] == 1.0
        assert client.get_merge(merge.id) == merge
        assert [m.id for m in client.merges(checkpoint_id=merge.checkpoints[0])] == [merge.id]
        assert merge.result_checkpoint_id is not None
        client.download(merge.result_checkpoint_id, tmp_path / "merged.safetensors")
        assert graphs.load(tmp_path / "merged.safetensors").architecture is not None

        job = client.submit("inspect", {"checkpoint_id": merge.checkpoints[0]})
        done = client.wait(job.id)
        assert isinstance(done.typed_result(), InspectResult)
        assert client.get_job(job.id).status.value == "succeeded"
        assert job.id in [j.id for j in client.jobs(kind="inspect", status="succeeded")]
        with pytest.raises(Conflict) as finished:
            client.cancel(job.id)
        assert finished.value.slug == "job-finished"
        with pytest.raises(InvalidRequest) as unknown:
            client.submit("nope", {})
        assert unknown.value.slug == "unknown-job-kind" and "inspect" in unknown.value.detail
        with pytest.raises(InvalidRequest) as incompatible:
            client.merge([files.net_a, files.other_arch])
        assert incompatible.value.slug == "incompatible-architectures"


def test_lists_are_followed_to_the_end(server: str) -> None:
    with Client(server, page_size=2) as client:
        ids = [client.upload(raw_checkpoint(seed)).id for seed in range(5)]
        assert [c.id for c in client.checkpoints()] == sorted(ids, reverse=True)
        jobs = [client.submit("inspect", {"checkpoint_id": i}).id for i in ids]
        for job in jobs:
            client.wait(job)
        assert [j.id for j in client.jobs(kind="inspect")] == sorted(jobs, reverse=True)
        assert list(client.predictions()) == []


def test_api_key_is_a_bearer_token_and_errors_are_typed(server: str) -> None:
    seen: list[httpx.Request] = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return super().handle_request(request)

    with Client(server, api_key="secret", transport=Recording()) as client:
        with pytest.raises(weightscope.Unauthorized) as refused:  # a key nobody issued
            client.metanetworks()
        assert refused.value.status == 401 and refused.value.slug == "unauthorized"
    assert {r.headers["authorization"] for r in seen} == {"Bearer secret"}
    with Client(server) as anonymous:  # open on loopback while no key exists
        anonymous.metanetworks()
        with pytest.raises(weightscope.ApiError) as bad:
            anonymous.upload(b"not a checkpoint")
        assert bad.value.status in (415, 422) and bad.value.body["status"] == bad.value.status
    with Client("http://127.0.0.1:9") as down, pytest.raises(Unreachable):
        down.metanetworks()


def test_zoos_and_training(server: str, tmp_path: Path) -> None:
    """A zoo from stored checkpoints and one from an archive; a metanetwork trained on the
    first, asked, listed by version and deleted - every zoo and training method."""
    import io
    import sys
    import tarfile

    sys.path.insert(0, str(Path(__file__).parents[1] / "app" / "metanetworks"))
    from _zoo import TINY, save_nets

    nets = save_nets(tmp_path / "zoo")
    with Client(server) as client:
        ids = [client.upload(path).id for path, _, _ in nets]
        items = [
            {"checkpoint_id": i, "label": label} for i, (_, label, _) in zip(ids, nets, strict=True)
        ]
        zoo = client.create_zoo("scales", "classification", items, seed=3)
        assert zoo.size == 40 and zoo.label_counts == {"large": 20, "small": 20}
        assert client.get_zoo(zoo.id) == zoo and [z.id for z in client.zoos()] == [zoo.id]
        test_items = list(client.zoo_items(zoo.id, split="test"))
        assert test_items and {item.split for item in test_items} == {"test"}
        with pytest.raises(Conflict):
            client.create_zoo("scales", "classification", items)

        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            text = "file,label\n" + "".join(f"{p.name},{label}\n" for p, label, _ in nets)
            info = tarfile.TarInfo("labels.csv")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
            for path, _, _ in nets:
                tar.add(path, arcname=path.name)
        archived = client.upload_zoo(buffer.getvalue(), name="from-archive", task="classification")
        assert archived.size == 40 and archived.id != zoo.id
        client.delete_zoo(archived.id)
        with pytest.raises(NotFound):
            client.get_zoo(archived.id)

        epochs: list[int] = []
        trained = client.train(
            "scales-net", zoo.id, epochs=2, config=TINY,
            progress=lambda job: epochs.append((job.progress_detail or {}).get("epoch", 0)),
        )  # fmt: skip
        assert trained.metanetwork == "scales-net" and trained.version == 1
        assert max(epochs) >= 1 and "accuracy" in trained.metrics["test"]
        (answer,) = client.predict(ids[0], metanetwork="scales-net@1")
        assert answer.label in ("small", "large")
        assert [m.version_number for m in client.metanetwork_versions("scales-net")] == [1]
        assert client.delete_metanetwork("scales-net") == [1]
        with pytest.raises(NotFound):
            client.get_metanetwork("scales-net")
