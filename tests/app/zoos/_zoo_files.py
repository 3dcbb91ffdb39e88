"""Helpers of the zoo tests: uploads, archives built in memory, labels.csv."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import httpx

SAMPLES = Path(__file__).resolve().parents[3] / "models" / "builtin" / "samples"


def sample_files(family: str) -> list[Path]:
    return sorted((SAMPLES / family).glob("*.safetensors"))


async def upload_all(client: httpx.AsyncClient, datas: list[bytes]) -> list[int]:
    ids = []
    for index, data in enumerate(datas):
        response = await client.post(
            "/v1/checkpoints", files={"file": (f"n{index}.safetensors", data)}
        )
        assert response.status_code in (200, 201), response.text
        ids.append(response.json()["id"])
    return ids


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def labels(rows: list[tuple[str, object]], column: str = "label", groups: list[str] | None = None
           ) -> bytes:
    header = f"file,{column}" + (",group" if groups else "")
    lines = [header] + [
        f"{name},{value}" + (f",{groups[i]}" if groups else "")
        for i, (name, value) in enumerate(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def classified(nets: list[bytes], count: int = 40) -> dict[str, bytes]:
    """``count`` nets in two classes (even/odd) with their labels.csv."""
    members = {f"nets/n{i}.safetensors": nets[i] for i in range(count)}
    rows = [(f"nets/n{i}.safetensors", "even" if i % 2 == 0 else "odd") for i in range(count)]
    return {"labels.csv": labels(rows), **members}
