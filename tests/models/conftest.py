"""Makes the small reference networks (``_nets``) importable from these tests."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)
