"""OTLP export proven against a real receiver: Arize Phoenix, installed from PyPI into its own
venv by `make test-otlp`, serving on 127.0.0.1. The traced demo exports its spans; they are
read back through Phoenix's REST API and checked: names, parent links, attributes, span kinds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
PROJECT = "omium-otlp-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    exe = os.environ.get("OMIUM_PHOENIX")
    assert exe and os.access(exe, os.X_OK), "run through `make test-otlp`, which installs Phoenix and sets OMIUM_PHOENIX"
    port, grpc = free_port(), free_port()
    work = tmp_path_factory.mktemp("phoenix")
    env = dict(os.environ, PHOENIX_WORKING_DIR=str(work), PHOENIX_HOST="127.0.0.1", PHOENIX_PORT=str(port), PHOENIX_GRPC_PORT=str(grpc))
    log = open(work / "phoenix.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([exe, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail(f"phoenix did not start: {(work / 'phoenix.log').read_text()[-2000:]}")
            time.sleep(1)
    yield base
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_the_traced_demo_reaches_phoenix(phoenix, tmp_path):
    env = dict(
        os.environ,
        OTEL_EXPORTER_OTLP_ENDPOINT=phoenix,
        OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={PROJECT}",
        OTEL_SERVICE_NAME="omium-demo",
    )
    demo = os.path.join(ROOT, "examples", "python", "traced_agent.py")
    subprocess.run([sys.executable, demo, str(tmp_path / "store")], env=env, check=True, timeout=120)

    deadline = time.monotonic() + 60
    while True:
        try:
            spans = get(f"{phoenix}/v1/projects/{PROJECT}/spans?limit=1000")["data"]
        except urllib.error.HTTPError as e:  # the project appears with its first span
            if e.code != 404 or time.monotonic() > deadline:
                raise
            spans = []
        mine = [s for s in spans if s["attributes"].get("omium.execution_id") == "cust-9"]
        if len(mine) >= 11 or time.monotonic() > deadline:
            break
        time.sleep(1)
    by_name: dict[str, list[dict]] = {}
    for s in mine:
        by_name.setdefault(s["name"], []).append(s)
    assert {
        "workflow traced_onboarding",
        "kyc",
        "credit",
        "kyc_agent",
        "credit_agent",
        "chat small-model",
        "execute_tool credit_bureau",
        "execute_tool send_email",
    } <= set(by_name), sorted(by_name)
    assert len({s["context"]["trace_id"] for s in mine}) == 1, "one execution, one trace"

    (root,) = by_name["workflow traced_onboarding"]
    (kyc,) = by_name["kyc"]
    (agent,) = by_name["kyc_agent"]
    assert root["parent_id"] is None
    assert kyc["parent_id"] == root["context"]["span_id"]
    assert agent["parent_id"] == kyc["context"]["span_id"]
    llm = next(s for s in by_name["chat small-model"] if s["parent_id"] == agent["context"]["span_id"])
    tool = by_name["execute_tool credit_bureau"][0]

    assert root["span_kind"] == "CHAIN"
    assert agent["span_kind"] == "AGENT"
    assert llm["span_kind"] == "LLM"
    assert tool["span_kind"] == "TOOL"

    a = llm["attributes"]
    assert a["gen_ai.request.model"] == "small-model"
    assert a["gen_ai.provider.name"] == "fake"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.usage.output_tokens"] == 24
    assert a["llm.model_name"] == "small-model"
    assert tool["attributes"]["gen_ai.tool.name"] == "credit_bureau"
    assert agent["attributes"]["role"] == "identity verification"
    assert all(s["status_code"] == "OK" for s in mine)
