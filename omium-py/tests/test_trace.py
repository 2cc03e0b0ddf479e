"""Tracing, replay, fork-at-step and diff, through the Python API: automatic spans of
workflows, steps, checkpoints and recovery actions; user spans; GenAI attributes; traceparent;
recorded LLM and tool calls replayed without live calls; the waterfall and the HTML timeline
rendered by a real headless Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import omium
import pytest


@pytest.fixture
def traced(store):
    omium.configure_tracing(enabled=True, capture_content=False)
    yield store
    omium.configure_tracing(enabled=True, capture_content=False, redact=lambda v: v)


class FakeLLM:
    """Stands in for a provider SDK: counts live calls, answers from a table."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def chat(self, *, model: str, messages: list[dict], temperature: float = 0.0) -> dict:
        self.calls.append({"model": model, "messages": messages})
        q = messages[-1]["content"]
        return {"model": model, "content": f"answer to {q}", "usage": {"input_tokens": 10 * len(messages), "output_tokens": 7}}


def by_name(spans: list[dict]) -> dict[str, dict]:
    return {s["name"]: s for s in spans}


def test_workflow_step_checkpoint_and_llm_spans_form_one_trace(traced):
    llm = FakeLLM()
    omium.set_pricing("gpt-4o", input_per_1k=0.005, output_per_1k=0.015)

    @omium.checkpoint("plan")
    def plan(q):
        return omium.llm_call(llm.chat, provider="openai", model="gpt-4o", messages=[{"role": "user", "content": q}], temperature=0.2)

    @omium.workflow("qa")
    def qa(q):
        with omium.trace("post-process", span_type="chain", team="search") as span:
            span.set_attribute("chars", 3)
        return plan(q)["content"]

    assert qa.run("why?", execution_id="t-1") == "answer to why?"
    spans = omium.spans("t-1")
    s = by_name(spans)
    assert {"workflow qa", "post-process", "plan", "chat gpt-4o", "checkpoint plan"} <= set(s)
    assert len({x["trace_id"] for x in spans}) == 1, "one execution, one trace"
    root = s["workflow qa"]
    assert root["parent"] is None and root["span_type"] == "workflow"
    assert s["plan"]["parent"] == root["span_id"]
    assert s["post-process"]["parent"] == root["span_id"]
    assert s["post-process"]["attributes"] == {"team": "search", "chars": 3}
    llm_span = s["chat gpt-4o"]
    assert llm_span["parent"] == s["plan"]["span_id"]
    assert llm_span["kind"] == "client"
    a = llm_span["attributes"]
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.request.temperature"] == 0.2
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (10, 7)
    assert a["omium.cost_usd"] == pytest.approx(10 * 0.005 / 1000 + 7 * 0.015 / 1000)
    assert "gen_ai.input.messages" not in a, "content is captured only when enabled"
    assert s["checkpoint plan"]["parent"] == s["plan"]["span_id"]
    assert s["plan"]["attributes"]["omium.checkpoint_id"] == s["checkpoint plan"]["attributes"]["omium.checkpoint_id"]


def test_content_capture_goes_through_the_redaction_hook(traced):
    omium.configure_tracing(capture_content=True, redact=lambda v: str(v).replace("secret-123", "[redacted]"))

    @omium.trace(span_type="tool")
    def lookup(account):
        return f"balance of {account}"

    @omium.workflow("capture")
    def wf():
        return lookup("secret-123")

    wf.run(execution_id="t-2")
    span = by_name(omium.spans("t-2"))["test_content_capture_goes_through_the_redaction_hook.<locals>.lookup"]
    assert "secret-123" not in span["attributes"]["input.value"]
    assert "[redacted]" in span["attributes"]["input.value"]
    assert span["attributes"]["output.value"] == "balance of [redacted]"


def test_errors_and_recovery_actions_are_spans(traced):
    omium.policy.apply("rules: [{trigger: error, actions: [{retry: {max_attempts: 2, initial_delay: 1ms, jitter: none}}]}]")
    calls = []

    @omium.checkpoint("flaky")
    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("reset")
        return 1

    @omium.workflow("retrying")
    def wf():
        return flaky()

    wf.run(execution_id="t-3")
    s = by_name(omium.spans("t-3"))
    rec = s["recovery retry"]
    assert rec["parent"] == s["flaky"]["span_id"]
    assert rec["attributes"]["omium.recovery.action"] == "retry"

    @omium.trace
    def broken():
        raise ValueError("nope")

    @omium.workflow("failing")
    def failing():
        broken()

    with pytest.raises(ValueError):
        failing.run(execution_id="t-4")
    s = by_name(omium.spans("t-4"))
    b = s["test_errors_and_recovery_actions_are_spans.<locals>.broken"]
    assert b["status"] == "error" and b["status_message"] == "ValueError: nope"
    assert b["events"][0]["name"] == "exception"
    assert s["workflow failing"]["status"] == "error"


def test_a_step_span_records_its_failure_and_with_content_capture_its_input_and_output(traced):
    # A step that succeeds has its span ended by the native record of its checkpoint; these are
    # the two other paths: a failed step (its span built and recorded from Python) and a step
    # whose span carries captured content.
    @omium.checkpoint("fails")
    def fails(x):
        raise ValueError(f"bad input {x}")

    @omium.workflow("step-fails")
    def failing():
        return fails(1)

    with pytest.raises(ValueError):
        failing.run(execution_id="t-5")
    s = by_name(omium.spans("t-5"))
    f = s["fails"]
    assert f["span_type"] == "step" and f["parent"] == s["workflow step-fails"]["span_id"]
    assert f["status"] == "error" and f["status_message"] == "ValueError: bad input 1"
    assert f["events"][0]["name"] == "exception" and f["attributes"]["omium.seq"] == 1
    assert "checkpoint fails" not in s, "nothing was recorded"

    omium.configure_tracing(capture_content=True)

    @omium.checkpoint("doubles")
    def doubles(x):
        return 2 * x

    @omium.workflow("step-content")
    def content():
        return doubles(21)

    assert content.run(execution_id="t-6") == 42
    s = by_name(omium.spans("t-6"))
    d, cp = s["doubles"], s["checkpoint doubles"]
    assert d["status"] == "ok" and d["parent"] == s["workflow step-content"]["span_id"]
    assert "21" in d["attributes"]["input.value"] and d["attributes"]["output.value"] == "42"
    assert cp["parent"] == d["span_id"] and d["attributes"]["omium.checkpoint_id"] == cp["attributes"]["omium.checkpoint_id"]


def test_traceparent_inject_and_extract(traced):
    seen = {}

    @omium.workflow("served")
    def served():
        seen["tp"] = omium.get_traceparent()
        return omium.inject({})

    remote = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with omium.extract({"TraceParent": remote}):
        headers = served.run(execution_id="t-5")
    assert seen["tp"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert headers == {"traceparent": seen["tp"]}
    root = by_name(omium.spans("t-5"))["workflow served"]
    assert (root["trace_id"], root["parent"]) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert omium.get_traceparent() is None
    with pytest.raises(omium.InvalidArgumentError, match="traceparent"):
        omium.extract("00-xyz-01")


def test_replay_answers_from_the_recording_and_reports_divergence(traced):
    llm = FakeLLM()
    sent = []

    def send_email(to, body):
        sent.append(to)
        return "sent"

    @omium.checkpoint("draft")
    def draft(q):
        return omium.llm_call(llm.chat, provider="openai", model="gpt-4o", messages=[{"role": "user", "content": q}])["content"]

    @omium.checkpoint("deliver")
    def deliver(text):
        return omium.tool_call("email", send_email, "a@example.com", text, side_effect=True)

    @omium.workflow("mailer")
    def mailer(q):
        return deliver(draft(q))

    assert mailer.run("hello", execution_id="m-1") == "sent"
    assert (len(llm.calls), sent) == (1, ["a@example.com"])

    r = omium.replay("m-1")
    assert r.output == "sent" and r.source_execution_id == "m-1"
    assert (len(llm.calls), sent) == (1, ["a@example.com"]), "no live call, the side-effect tool did not run"
    assert [d.differs for d in omium.diff("m-1", r.execution_id)] == [False, False, False, False]

    # The code changed: the prompt differs from the recording.
    @omium.checkpoint("draft")
    def draft(q):  # noqa: F811
        return omium.llm_call(llm.chat, provider="openai", model="gpt-4o", messages=[{"role": "user", "content": q + "!"}])["content"]

    with pytest.raises(omium.ReplayDivergence) as e:
        omium.replay("m-1")
    assert e.value.index == 0
    assert e.value.recorded["messages"][0]["content"] == "hello"
    assert e.value.actual["messages"][0]["content"] == "hello!"
    assert "recorded:" in str(e.value) and "actual:" in str(e.value)
    assert len(llm.calls) == 1


def test_fork_at_step_changes_the_input_and_goes_live(traced):
    llm = FakeLLM()

    @omium.checkpoint("research")
    def research(topic):
        return f"notes on {topic}"

    @omium.checkpoint("write")
    def write(notes):
        return omium.llm_call(llm.chat, provider="openai", model="gpt-4o", messages=[{"role": "user", "content": notes}])["content"]

    @omium.workflow("writer")
    def writer(topic):
        return write(research(topic))

    assert writer.run("tides", execution_id="w-1") == "answer to notes on tides"
    r = omium.fork("w-1", at_step=2, mutate=lambda args, kwargs: (("notes on the moon",), kwargs))
    assert r.output == "answer to notes on the moon"
    assert len(llm.calls) == 2, "live from the forked step on"
    assert omium.get_execution("w-1").status == "completed", "the original is kept"
    rows = {d.position: d for d in omium.diff("w-1", r.execution_id)}
    assert list(rows) == ["1", "2/0", "2"], "research, the LLM call inside write, write"
    assert not rows["1"].differs
    assert rows["2/0"].input_differs and rows["2/0"].output_differs and rows["2/0"].name_a == "llm:chat gpt-4o"
    assert rows["2"].output_differs
    with pytest.raises(ValueError, match="positions 1 to 2, not 9"):
        omium.fork("w-1", at_step=9, mutate=lambda a, k: (a, k))


def test_async_llm_calls_are_recorded_and_resumed(traced):
    calls = []

    async def achat(*, model, messages):
        calls.append(1)
        await asyncio.sleep(0)
        return {"content": "hi", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

    @omium.workflow("async_llm")
    async def wf():
        r = await omium.llm_call(achat, provider="anthropic", model="claude", messages=[{"role": "user", "content": "x"}])
        return r["content"]

    assert asyncio.run(wf.run(execution_id="a-1")) == "hi"
    s = by_name(omium.spans("a-1"))["chat claude"]
    assert (s["attributes"]["gen_ai.usage.input_tokens"], s["attributes"]["gen_ai.usage.output_tokens"]) == (3, 1)


def test_waterfall_and_html_timeline_rendered_by_headless_chromium(traced, tmp_path):
    @omium.checkpoint("kyc", agent="kyc_agent")
    def kyc():
        with omium.trace("ocr", span_type="tool"):
            pass
        return True

    @omium.checkpoint("score", agent="credit_agent")
    def score(ok):
        return 700

    @omium.workflow("onboarding")
    def onboarding():
        return score(kyc())

    onboarding.run(execution_id="cust-7")
    text = omium.trace_text("cust-7")
    lines = text.splitlines()
    assert lines[0].startswith("SPAN")
    assert any(line.startswith("workflow onboarding [workflow]") for line in lines)
    assert any(line.startswith("  kyc [step]") for line in lines)
    assert any(line.startswith("    ocr [tool]") for line in lines)
    assert all("█" in line for line in lines[1:])

    page = tmp_path / "trace.html"
    omium.trace_html("cust-7", page)
    html = page.read_text()
    assert "kyc_agent" in html and "credit_agent" in html and "<script" not in html
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is installed by `make deps` (scripts/ensure-deps.sh)"
    shot = tmp_path / "trace.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1200,700", page.as_uri()], check=True, capture_output=True, timeout=120
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], check=True, capture_output=True, timeout=120, text=True).stdout
    assert dom.count('class="row"') == len(omium.spans("cust-7"))
    assert dom.count('class="agent"') == 3, "main, kyc_agent and credit_agent"
    if os.environ.get("OMIUM_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["OMIUM_KEEP_SCREENSHOT"])


def test_the_traced_example_runs(tmp_path):
    import sys

    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "traced_agent.py")
    out = subprocess.run([sys.executable, example, str(tmp_path)], check=True, capture_output=True, text=True, timeout=120).stdout
    assert "      chat small-model [llm]" in out
    assert "      execute_tool send_email [tool]" in out
    assert "with no LLM call; differences: none" in out
    assert (tmp_path / "cust-9.html").exists()
