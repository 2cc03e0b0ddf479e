from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

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
from omium import policy as _policy  # noqa: E402


@pytest.fixture
def sockdir():
    """A short directory for unix sockets (a socket path must be under 108 bytes: not under
    pytest's tmp_path)."""
    d = tempfile.mkdtemp(prefix="omium-serve-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def store(tmp_path):
    """A fresh store for each test (buffered: survives a process crash; fast)."""
    s = omium.init(path=tmp_path / "store", durability="buffered")
    before = dict(_workflow._registry)
    attached = dict(_policy._attached)
    yield s
    omium.shutdown()
    _recovery.clear_hooks()
    _workflow._registry.clear()
    _workflow._registry.update(before)
    # Policies attached by a test's @omium.checkpoint(policy=...) are not the next test's.
    _policy._attached.clear()
    _policy._attached.update(attached)
    _policy._synced.clear()


def ctrl_c_as_in_a_terminal() -> None:
    """`preexec_fn` for a child that gets Ctrl-C: SIGINT back to its default. A test run
    started in the background by a non-interactive shell (CI runners, `make test &`) inherits
    SIGINT ignored, and a Python started that way never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
