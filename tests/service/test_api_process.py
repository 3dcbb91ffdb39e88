"""The API process never loads a model and never initialises CUDA: checked in a fresh
interpreter (this test process has imported models already) that serves real requests,
answered by its embedded worker process (the default)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import Files

SCRIPT = """
import json, sys
from pathlib import Path
import torch
from fastapi.testclient import TestClient
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings

data, metanetworks, net = (Path(p) for p in sys.argv[1:4])
settings = Settings(_env_file=None, data_dir=data, metanetwork_dir=metanetworks,
                    max_wait_ms=0, trusted_hosts=["testserver"])
upgrade(settings.database_url)
with TestClient(create_app(settings)) as client:
    statuses = [client.get("/v1/metanetworks").status_code]
    checkpoint = client.post("/v1/checkpoints", files={"file": ("a.st", net.read_bytes())})
    statuses.append(client.post("/v1/predictions", json={"checkpoint_id": checkpoint.json()["id"],
                                "metanetwork": "tiny-digits"}).status_code)
    statuses.append(client.post(f"/v1/predictions?metanetwork=tiny-digits&wait=60",
                                files={"file": ("n.st", net.read_bytes())}).status_code)
    jobs = client.get("/v1/jobs").json()["items"]
print(json.dumps({
    "statuses": statuses,
    "jobs": sorted(job["status"] for job in jobs),
    "cuda_initialized": torch.cuda.is_initialized(),
    "model_modules": sorted(m for m in sys.modules if m.split(".")[0] in ("models", "merging")),
}))
"""


def test_api_serves_predictions_without_models_or_cuda(files: Files, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(files.metanetworks), str(files.net_a)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200, 202, 200]  # the second waited for its answer
    assert report["jobs"] == ["succeeded", "succeeded"]  # the worker process ran both
    assert report["cuda_initialized"] is False
    assert report["model_modules"] == []
