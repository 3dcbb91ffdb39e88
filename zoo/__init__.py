"""Reproducible model zoos on sklearn's digits, trained many models at a time.

``zoo.build(name, size, seed, out)`` writes a directory of self-describing safetensors
checkpoints plus ``manifest.jsonl`` and ``zoo.json``; ``zoo.stats(dir)`` summarises one.
"""

from zoo.builder import build, default_device
from zoo.families import FAMILIES, Family, ModelSpec, get_family
from zoo.manifest import read_manifest, read_zoo_json, stats

__all__ = [
    "FAMILIES",
    "Family",
    "ModelSpec",
    "build",
    "default_device",
    "get_family",
    "read_manifest",
    "read_zoo_json",
    "stats",
]
