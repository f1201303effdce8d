"""Makes the toy task module (``training_toy``) importable by the tests and the torchrun script."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
