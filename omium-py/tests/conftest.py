from __future__ import annotations

import os

# No telemetry or tracing calls out of the test machine (CrewAI's and its OpenTelemetry SDK's).
for _var, _value in {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_TRACING_ENABLED": "false",
}.items():
    os.environ.setdefault(_var, _value)

import omium  # noqa: E402
import pytest  # noqa: E402
from omium import _recovery, _workflow  # noqa: E402


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
