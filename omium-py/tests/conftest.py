from __future__ import annotations

import omium
import pytest
from omium import _recovery, _workflow


@pytest.fixture
def store(tmp_path):
    """A fresh store for each test (buffered: survives a process crash; fast)."""
    s = omium.init(path=tmp_path / "store", durability="buffered")
    before = dict(_workflow._registry)
    yield s
    omium.shutdown()
    _recovery.clear_hooks()
    _workflow._registry.clear()
    _workflow._registry.update(before)
