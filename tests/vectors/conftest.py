"""Golden vectors from public projects, read from ../shared/vectors (third-party data, never copied here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"


def load_vectors(name: str) -> Any:
    path = VECTORS / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the public appliance vectors live in ../shared/vectors beside the project "
                    "(CI always has them)")
    return json.loads(path.read_text())
