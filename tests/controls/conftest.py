"""Controls test set-up: the display tests' pixel helpers, importable as ``wallmesh_pixels``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if "wallmesh_pixels" not in sys.modules:  # the display tests' conftest may have loaded it
    _spec = importlib.util.spec_from_file_location("wallmesh_pixels", Path(__file__).parent.parent / "display" / "pixels.py")
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _module
    _spec.loader.exec_module(_module)
