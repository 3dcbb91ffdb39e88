"""One archive upload makes a zoo: zip and tar, real checkpoints, all or nothing, and
archives that try to escape, explode or lie are refused before anything is stored."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest
import torch
from _zoo_files import classified, labels, sample_files, tar_bytes, upload_all, zip_bytes
from torch import nn

import graphs

pytestmark = pytest.mark.anyio


async def post_archive(client, data: bytes, name: str = "z", task: str = "classification",
                       multipart: bool = False, **params: object):
    query = {"name": name, "task": task, **params}
    if multipart:
        return await client.post("/v1/zoos/archive", params=query,
                                 files={"file": ("zoo.zip", data)})
    return await client.post("/v1/zoos/archive", params=query, content=data,
                             headers={"content-type": "application/octet-stream"})


@pytest.fixture
def nothing_stored(zoo_rows, checkpoint_rows, stored_files):
    def check() -> None:
        assert zoo_rows() == (0, 0)
        assert checkpoint_rows() == 0
        assert stored_files() == []  # no blob, no temp file

    return check


async def test_zip_upload_creates_the_zoo_and_its_checkpoints(
    client, nets, checkpoint_rows
) -> None:
    response = await post_archive(client, zip_bytes(classified(nets)), seed=5)
    assert response.status_code == 201, response.text
    zoo = response.json()
    assert response.headers["location"] == f"/v1/zoos/{zoo['id']}"
    assert zoo["size"] == 40 and zoo["label_counts"] == {"even": 20, "odd": 20}
    assert zoo["seed"] == 5
    assert checkpoint_rows() == 40
    items = (await client.get(f"/v1/zoos/{zoo['id']}/items", params={"limit": 200})).json()
    for index, item in enumerate(items["items"]):
        checkpoint = (await client.get(f"/v1/checkpoints/{item['checkpoint_id']}")).json()
        assert checkpoint["filename"] == f"n{index}.safetensors"
        assert item["label"] == ("even", "odd")[index % 2]


@pytest.mark.parametrize("mode", ["w", "w:gz"])
async def test_tar_of_the_shipped_samples_in_one_folder(client, mode, checkpoint_rows) -> None:
    files = sample_files("digits-cnn-generalization")
    targets = [json.loads(graphs.load(f).metadata["weightscope.zoo"])["target"] for f in files]
    rows = [(f.name, t) for f, t in zip(files, targets, strict=True)]
    members = {"zoo/labels.csv": labels(rows, "target")}
    members |= {f"zoo/{f.name}": f.read_bytes() for f in files}
    response = await post_archive(client, tar_bytes(members, mode), name="cnn", task="regression",
                                  multipart=True)
    assert response.status_code == 201, response.text
    zoo = response.json()
    assert zoo["size"] == 24
    assert zoo["target_quantiles"]["q00"] == pytest.approx(min(targets))
    assert zoo["target_quantiles"]["q100"] == pytest.approx(max(targets))
    assert "conv2d×2" in zoo["architectures"][0]["description"]

    # the same checkpoints again: the stored rows are used, not copied
    again = await post_archive(client, tar_bytes(members, mode), name="cnn2", task="regression")
    assert again.status_code == 201, again.text
    assert checkpoint_rows() == 24


async def test_a_bad_member_fails_the_whole_archive(client, nets, nothing_stored,
                                                    assert_problem) -> None:
    members = classified(nets)
    members["nets/n39.safetensors"] = b"this is not a checkpoint at all"
    body = assert_problem(await post_archive(client, zip_bytes(members)), 422,
                          "member 'nets/n39.safetensors'")
    assert body["type"].endswith("invalid-checkpoint")
    nothing_stored()


async def test_an_ungraphable_member_fails_after_its_blobs_were_placed(
    client, nets, nothing_stored, assert_problem
) -> None:
    import torch

    from graphs.safe_io import to_safetensors_bytes

    members = classified(nets)
    members["nets/n39.safetensors"] = to_safetensors_bytes({"odd.shape": torch.ones(2, 3, 5)})
    assert_problem(await post_archive(client, zip_bytes(members)), 422,
                   "member 'nets/n39.safetensors'")
    nothing_stored()


async def test_known_checkpoints_survive_a_failed_archive(client, nets, checkpoint_rows,
                                                          stored_files, zoo_rows) -> None:
    await upload_all(client, nets[:5])
    before = stored_files()
    members = classified(nets)
    members["labels.csv"] += b"nets/n0.safetensors,even\n"  # listed twice
    response = await post_archive(client, zip_bytes(members))
    assert response.status_code == 422 and "listed twice" in response.json()["detail"]
    members = classified(nets)
    members["nets/n39.safetensors"] = b"garbage"
    assert (await post_archive(client, zip_bytes(members))).status_code == 422
    assert checkpoint_rows() == 5 and zoo_rows() == (0, 0)
    assert stored_files() == before


def symlink_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("nets/n0.safetensors")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


def hardlink_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("nets/n0.safetensors")
        link.type, link.linkname = tarfile.LNKTYPE, "../../secret"
        archive.addfile(link)
    return buffer.getvalue()


def zip_symlink() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("nets/n0.safetensors")
        info.external_attr = (0o120777 << 16)
        archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda m: zip_bytes({**m, "../evil.safetensors": b"x"}), "'..' in its name"),
        (lambda m: zip_bytes({**m, "nets/../../evil": b"x"}), "'..' in its name"),
        (lambda m: tar_bytes({**m, "/etc/evil": b"x"}), "absolute name"),
        (lambda m: zip_bytes({**m, "C:/evil": b"x"}), "absolute name"),
        (lambda m: zip_bytes({**m, "nets\\evil": b"x"}), "backslash"),
        (lambda m: symlink_tar(), "is a link"),
        (lambda m: hardlink_tar(), "is a link"),
        (lambda m: zip_symlink(), "is a symbolic link"),
    ],
)
async def test_escaping_members_are_refused(client, nets, nothing_stored, assert_problem,
                                            make, fragment) -> None:
    assert_problem(await post_archive(client, make(classified(nets))), 422, fragment)
    nothing_stored()


async def test_too_many_members(client, nets, settings, nothing_stored, assert_problem) -> None:
    settings.zoo_archive_max_members = 30
    assert_problem(await post_archive(client, zip_bytes(classified(nets))), 413,
                   "more than 30 entries")
    nothing_stored()


async def test_too_many_unpacked_bytes(client, nets, settings, nothing_stored,
                                       assert_problem) -> None:
    settings.zoo_archive_max_unpacked_bytes = 10_000
    assert_problem(await post_archive(client, tar_bytes(classified(nets))), 413,
                   "unpacks to more than 10000 bytes")
    nothing_stored()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
async def test_compression_bombs(client, nets, nothing_stored, assert_problem, kind) -> None:
    members = {**classified(nets), "nets/zeros.bin": bytes(64 * 2**20)}
    data = (zip_bytes(members, zipfile.ZIP_DEFLATED) if kind == "zip"
            else tar_bytes(members, "w:gz"))
    assert len(data) < 2 * 2**20
    assert_problem(await post_archive(client, data), 413, "compression bomb")
    nothing_stored()


async def test_a_member_longer_than_declared_is_refused(client, nets, nothing_stored,
                                                        assert_problem) -> None:
    members = classified(nets)
    data = bytearray(zip_bytes(members))
    # shrink the declared size of the last member in its central directory entry
    name = b"nets/n39.safetensors"
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(name))
    declared = int.from_bytes(data[central + 24 : central + 28], "little")
    data[central + 24 : central + 28] = (declared - 10).to_bytes(4, "little")
    response = await post_archive(client, bytes(data))
    assert response.status_code in (413, 422), response.text
    assert "nets/n39.safetensors" in response.json()["detail"]
    nothing_stored()


@pytest.mark.parametrize(
    ("members", "status", "fragment"),
    [
        ({"nets/a.safetensors": b"x"}, 422, "no labels.csv"),
        ({"labels.csv": b"name,label\na,b\n"}, 422, "needs file and label"),
        ({"labels.csv": b"file,label,colour\n"}, 422, "allowed: file, label or target, group"),
        ({"labels.csv": b"file,label\nmissing.safetensors,a\n"}, 422,
         "'missing.safetensors'): no such file"),
        ({"labels.csv": b"file,label\n../x,a\n"}, 422, "not a relative path"),
    ],
)
async def test_labels_csv_problems(client, nothing_stored, assert_problem, members, status,
                                   fragment) -> None:
    assert_problem(await post_archive(client, zip_bytes(members)), status, fragment)
    nothing_stored()


async def test_csv_label_kinds_and_targets(client, nets, nothing_stored, assert_problem) -> None:
    members = {f"n{i}.safetensors": nets[i] for i in range(20)}
    rows = [(f"n{i}.safetensors", "high" if i == 7 else i / 20) for i in range(20)]
    response = await post_archive(client, zip_bytes({"labels.csv": labels(rows, "target"),
                                                     **members}), task="regression")
    assert_problem(response, 422, "member 'n7.safetensors': target 'high' is not a number")
    mixed = b"file,label,target\n" + b"".join(
        f"n{i}.safetensors,{'a' if i < 10 else ''},{'' if i < 10 else 0.5}\n".encode()
        for i in range(20)
    )
    response = await post_archive(client, zip_bytes({"labels.csv": mixed, **members}))
    assert_problem(response, 422, "mixed label kinds")
    few = {"labels.csv": labels([(f"n{i}.safetensors", i % 2) for i in range(19)]), **members}
    assert_problem(await post_archive(client, zip_bytes(few)), 422, "at least 20 items")
    nothing_stored()


async def test_same_bytes_twice_in_one_archive(client, nets, nothing_stored,
                                               assert_problem) -> None:
    members = classified(nets)
    members["nets/n39.safetensors"] = nets[0]
    assert_problem(await post_archive(client, zip_bytes(members)), 422,
                   "has the same bytes as member 'nets/n0.safetensors'")
    nothing_stored()


async def test_not_an_archive_and_too_large(client, settings, nothing_stored,
                                            assert_problem) -> None:
    assert_problem(await post_archive(client, b"plain text, no archive"), 422,
                   "not a .zip or .tar")
    settings.zoo_archive_max_bytes = 1000
    assert_problem(await post_archive(client, bytes(5000)), 413, "exceeds the limit")
    nothing_stored()


async def test_duplicate_name_is_refused_before_unpacking(client, nets, assert_problem,
                                                          zoo_rows) -> None:
    data = zip_bytes(classified(nets))
    assert (await post_archive(client, data)).status_code == 201
    assert_problem(await post_archive(client, data), 409, "exists already")
    assert zoo_rows() == (1, 40)


def pytorch_member(seed: int) -> bytes:
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


async def test_pytorch_members_are_converted_and_their_blobs_removed_on_failure(
    client, nets, nothing_stored, checkpoint_rows, stored_files
) -> None:
    members = classified(nets)
    for i in range(0, 40, 4):
        members[f"nets/n{i}.safetensors"] = pytorch_member(i)  # the name does not decide
    bad = {**members, "nets/n39.safetensors": b"garbage"}
    response = await post_archive(client, zip_bytes(bad))
    assert response.status_code == 422 and "nets/n39.safetensors" in response.json()["detail"]
    nothing_stored()
    response = await post_archive(client, zip_bytes(members))
    assert response.status_code == 201, response.text
    formats = {
        (await client.get(f"/v1/checkpoints/{item['checkpoint_id']}")).json()["format"]
        for item in (await client.get(f"/v1/zoos/{response.json()['id']}/items")).json()["items"]
    }
    assert formats == {"pytorch", "safetensors"}
    assert checkpoint_rows() == 40 and len(stored_files()) == 40


async def test_items_follow_labels_csv_not_the_archive_order(client, nets) -> None:
    members = {f"n{i}.safetensors": nets[i] for i in range(20)}
    rows = [(f"n{i}.safetensors", i / 20) for i in reversed(range(20))]
    data = tar_bytes({**members, "labels.csv": labels(rows, "target")}, "w:gz")
    response = await post_archive(client, data, task="regression")
    assert response.status_code == 201, response.text
    items = (await client.get(f"/v1/zoos/{response.json()['id']}/items")).json()["items"]
    names = [
        (await client.get(f"/v1/checkpoints/{item['checkpoint_id']}")).json()["filename"]
        for item in items
    ]
    assert names == [name for name, _ in rows]
    assert [item["target"] for item in items] == [target for _, target in rows]
