"""The zoo manifest (manifest.jsonl: one row per checkpoint) and zoo.json, and their statistics.

Rows are rebuilt from the checkpoints' own header records at the end of every build, in index
order, so an interrupted-then-resumed build writes exactly the manifest of an uninterrupted one.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.jsonl"
ZOO_JSON = "zoo.json"
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def checkpoint_name(index: int) -> str:
    return f"{index:06d}.safetensors"


def rejected_name(index: int) -> str:
    """Marker of a fit that failed the family's quality floor (kept so resume skips it)."""
    return f"{index:06d}.rejected.json"


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    from zoo.store import write_text_atomic

    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_manifest(zoo_dir: str | Path) -> list[dict[str, Any]]:
    text = (Path(zoo_dir) / MANIFEST).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_zoo_json(zoo_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(zoo_dir) / ZOO_JSON).read_text())


def _quantiles(values: list[float]) -> dict[str, float]:
    q = np.quantile(np.asarray(values, dtype=np.float64), QUANTILES) if values else []
    return {
        f"q{round(p * 100):02d}": round(float(v), 4) for p, v in zip(QUANTILES, q, strict=False)
    }


def stats(zoo_dir: str | Path) -> dict[str, Any]:
    """Counts per split (and per architecture kind) and quantiles of every numeric metric."""
    rows = read_manifest(zoo_dir)
    info = read_zoo_json(zoo_dir)
    out: dict[str, Any] = {
        "name": info["name"],
        "seed": info["seed"],
        "checkpoints": len(rows),
        "rejected": len(info.get("rejected", [])),
        "splits": {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")},
        "kinds": {},
        "metrics": {},
    }
    if info.get("classes"):  # a classification zoo with named classes (digits-backdoor)
        names = info["classes"]
        out["classes"] = {c: sum(r["target"] == i for r in rows) for i, c in enumerate(names)}
        out["classes_by_split"] = {
            s: {c: sum(r["target"] == i and r["split"] == s for r in rows)
                for i, c in enumerate(names)}
            for s in ("train", "val", "test")
        }
    for r in rows:
        out["kinds"][r["arch"]["kind"]] = out["kinds"].get(r["arch"]["kind"], 0) + 1
    metric_names = sorted(
        {k for r in rows for k, v in r["metrics"].items() if isinstance(v, float)}
    )
    for name in metric_names:
        out["metrics"][name] = _quantiles([r["metrics"][name] for r in rows])
    if info.get("build_seconds") is not None:
        out["build_seconds"] = info["build_seconds"]
    return out
