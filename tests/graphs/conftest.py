"""Makes the shared model families (``_graph_models``) importable from these tests, and
``tests/merging`` too: ``_graph_models`` takes its MLP, CNN, ResNet and encoder block from
``_merging_models`` so that both suites share one definition of each."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "merging"))
