"""Recovery policies end to end, through the Python API: retries, escalation with webhooks to a
real HTTP server, pause and human resume with edited state, rollback and re-run, fallbacks,
fixers, the analyzer, the tool allowlist, crash detection, history and metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import omium
import pytest

FAST_RETRY = "{max_attempts: 3, initial_delay: 10ms, jitter: none}"


SECRET = "whsec-test-0123456789"


@pytest.fixture
def webhook(monkeypatch):
    """A real HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it. Webhooks reach
    loopback only when the operator allows it (as for an internal receiver), and are signed."""
    monkeypatch.setenv("OMIUM_WEBHOOK_ALLOW", "127.0.0.1")
    monkeypatch.setenv("OMIUM_WEBHOOK_SECRET", SECRET)
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(
                {
                    "path": self.path,
                    "content_type": self.headers["content-type"],
                    "body": json.loads(body),
                    "raw": body,
                    "signature": self.headers.get("omium-signature"),
                }
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_timeout_then_retry_then_success(store):
    omium.policy.apply(f"rules:\n  - trigger: timeout_error\n    actions: [{{retry: {FAST_RETRY}}}]\n")
    calls = []

    @omium.checkpoint("call_llm", timeout=0.2)
    def call_llm(prompt):
        calls.append(prompt)
        if len(calls) == 1:
            time.sleep(1)  # the first call hangs
        return f"answer to {prompt}"

    @omium.workflow("qa")
    def qa(prompt):
        return call_llm(prompt)

    assert qa.run("hi", execution_id="q1") == "answer to hi"
    assert len(calls) == 2
    (f,) = omium.failures("q1")
    assert (f.type, f.step, f.outcome) == ("timeout_error", "call_llm", "recovered")
    assert [(a["action"], a["outcome"]) for a in f.actions] == [("retry", "ok")]
    assert f.recovery_time is not None
    m = omium.recovery_metrics()
    assert (m["failures"], m["recovered"], m["recovery_rate"], m["retries_per_success"]) == (1, 1, 1.0, 1.0)


def test_three_timeouts_escalate_and_webhooks_reach_a_real_server(store, webhook):
    url, received = webhook
    omium.policy.apply(
        textwrap.dedent(f"""
        channels:
          devops_team: {{webhook: "{url}/ops"}}
          slack: {{webhook: "{url}/slack", format: slack}}
        retries: {{max_attempts: 3, initial_delay: 10ms, jitter: none}}
        recovery:
          on_timeout: [retry, then_escalate]
        """)
    )
    notified = []
    omium.add_notifier(notified.append, channels=["devops_team"])
    calls = []

    @omium.checkpoint("slow_tool", timeout=0.05)
    def slow_tool():
        calls.append(1)
        time.sleep(0.5)

    @omium.workflow("escalating")
    def wf():
        return slow_tool()

    with pytest.raises(omium.EscalatedError) as e:
        wf.run(execution_id="esc-1")
    assert len(calls) == 3, "three attempts in all"
    assert isinstance(e.value.__cause__, omium.StepTimeoutError)
    assert e.value.failure["outcome"] == "escalated"
    assert omium.get_execution("esc-1").status == "failed"
    by_path = {r["path"]: r for r in received}
    assert by_path["/ops"]["body"]["event"] == "omium.failure.escalation"
    assert by_path["/ops"]["body"]["failure"]["type"] == "timeout_error"
    assert by_path["/ops"]["body"]["failure"]["step"] == "slow_tool"
    assert by_path["/ops"]["content_type"] == "application/json"
    assert "timeout_error in step `slow_tool`" in by_path["/slack"]["body"]["text"]
    # The documented recipe verifies the signature: HMAC-SHA256 of "<t>.<body>" with the secret.
    fields = dict(kv.split("=", 1) for kv in by_path["/ops"]["signature"].split(","))
    expected = hmac.new(SECRET.encode(), fields["t"].encode() + b"." + by_path["/ops"]["raw"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert abs(time.time() - int(fields["t"])) < 300
    assert notified and notified[0]["failure"]["execution_id"] == "esc-1"
    (f,) = omium.failures("esc-1")
    assert [a["action"] for a in f.actions] == ["retry", "retry", "escalate"]
    assert omium.recovery_metrics()["by_type"] == {"timeout_error": 1}


def test_webhooks_to_loopback_or_metadata_addresses_are_refused_unless_the_operator_allows_them(store, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.delenv("OMIUM_WEBHOOK_ALLOW")
    omium.policy.apply(
        textwrap.dedent(f"""
        channels:
          local: {{webhook: "{url}/local"}}
          metadata: {{webhook: "http://169.254.169.254/latest/meta-data/"}}
        retries: {{max_attempts: 1, initial_delay: 10ms, jitter: none}}
        recovery:
          on_timeout: [retry, then_escalate]
        """),
        scope="workflow:refused",
    )

    @omium.checkpoint("slow", timeout=0.05)
    def slow():
        time.sleep(0.5)

    @omium.workflow("refused")
    def wf():
        return slow()

    with pytest.raises(omium.EscalatedError):
        wf.run(execution_id="ssrf-1")
    assert received == [], "nothing reached the loopback receiver"
    (f,) = omium.failures("ssrf-1")
    said = json.dumps(f.actions)
    assert "refused: 127.0.0.1 is a loopback, private, link-local or other non-public address" in said, said
    assert "OMIUM_WEBHOOK_ALLOW=169.254.169.254" in said, said


def test_hallucination_pauses_then_a_human_resumes_with_edited_state(store, webhook):
    url, received = webhook
    omium.policy.apply(omium.policy.validate(os.path.join(os.path.dirname(__file__), "../../examples/policies/original-policies.yaml")))
    omium.policy.apply(f'channels: {{devops_team: {{webhook: "{url}"}}}}', scope="workflow:answering")
    runs = []

    @omium.checkpoint("draft", validators=[lambda r: "source" in r or "no source cited"])
    def draft(question):
        runs.append(question)
        return "The moon is made of cheese."

    @omium.checkpoint("publish")
    def publish(text):
        return {"published": text}

    @omium.workflow("answering")
    def answering(question):
        return publish(draft(question))

    with pytest.raises(omium.ExecutionPaused) as e:
        answering.run("what is the moon?", execution_id="ans-1")
    assert e.value.execution_id == "ans-1"
    info = omium.get_execution("ans-1")
    assert info.status == "paused"
    assert received and received[0]["body"]["failure"]["type"] == "hallucination_detected"
    assert received[0]["body"]["failure"]["suggested_fix"] == "update_prompt_with_constraint"
    with pytest.raises(omium.InvalidStateError, match="waits for a human"):
        answering.run("what is the moon?", execution_id="ans-1")

    out = omium.resume("ans-1", state="The moon is rock (source: NASA).", by="reviewer")
    assert out == {"published": "The moon is rock (source: NASA)."}
    assert runs == ["what is the moon?"], "the human's state replaced the step; it did not run again"
    (f,) = omium.failures("ans-1")
    assert f.outcome == "recovered"
    assert [a["action"] for a in f.actions] == ["suggest_fix", "notify", "pause", "resume"]
    assert json.loads(f.actions[-1]["detail"]) == {"by": "reviewer", "state_edited": True}
    assert omium.recovery_metrics("answering")["mttr_ms"] >= 0


def test_consensus_violation_rolls_back_and_reruns(store):
    omium.policy.apply(os.path.join(os.path.dirname(__file__), "../../examples/policies/original-policies.yaml"))
    calls = {"kyc": 0, "handoff": 0}
    inspected = []
    omium.set_analyzer(lambda failure: inspected.append(failure) or {"root_cause": "credit agent missed the hand-off"})

    @omium.checkpoint("kyc")
    def kyc():
        calls["kyc"] += 1
        return {"verified": True}

    @omium.checkpoint("handoff")
    def handoff(k):
        calls["handoff"] += 1
        if calls["handoff"] == 1:
            raise omium.ConsensusViolation("credit_agent did not acknowledge message 7 within 5 s")
        return "agreed"

    @omium.workflow("onboarding")
    def onboarding():
        return handoff(kyc())

    assert onboarding.run(execution_id="c-1") == "agreed"
    assert calls == {"kyc": 1, "handoff": 2}, "the re-run replayed kyc and ran the hand-off again"
    names = [c.name for c in omium.history("c-1")]
    assert names == ["kyc", "rollback to kyc", "handoff"]
    (f,) = omium.failures("c-1")
    assert (f.type, f.outcome, f.root_cause) == ("consensus_violation", "recovered", "credit agent missed the hand-off")
    assert [a["action"] for a in f.actions] == ["inspect", "notify", "rollback"]
    assert inspected[0]["type"] == "consensus_violation"


def test_rollback_happens_at_most_max_times(store):
    omium.policy.apply("rules: [{trigger: consensus_violation, actions: [rollback]}]")
    calls = []

    @omium.checkpoint("vote")
    def vote():
        calls.append(1)
        raise omium.ConsensusViolation("split vote")

    @omium.workflow("stubborn")
    def stubborn():
        return vote()

    with pytest.raises(omium.ConsensusViolation):
        stubborn.run(execution_id="s-1")
    assert len(calls) == 2, "one rollback and re-run, then the rule is exhausted and the step fails"
    assert [f.outcome for f in omium.failures("s-1")] == ["failed", "failed"]


def test_fallback_fixer_and_classification(store):
    omium.policy.apply(
        textwrap.dedent("""
        classify:
          ProviderOverloaded: rate_limit_error
        rules:
          - trigger: rate_limit_error
            actions: [{fallback: {function: small_model}}]
          - trigger: postcondition_failed
            actions: [{suggest_fix: {fix: shorten, auto_apply: true}}]
        """)
    )

    class ProviderOverloaded(Exception):
        pass

    @omium.register_fallback("small_model")
    def small_model(prompt):
        return f"small: {prompt}"

    omium.register_fix("shorten", lambda failure, args, kwargs: ([args[0][:5]], kwargs))

    @omium.checkpoint("big_model")
    def big_model(prompt):
        raise ProviderOverloaded("try later")

    @omium.checkpoint("summarize", postconditions=["size(result) <= 10"])
    def summarize(text):
        return text.upper()

    @omium.workflow("llm")
    def llm():
        return big_model("hello"), summarize("a very long text")

    assert llm.run(execution_id="l-1") == ("small: hello", "A VER")
    kinds = [(f.type, f.outcome, f.actions[0]["action"]) for f in omium.failures("l-1")]
    assert kinds == [("rate_limit_error", "recovered", "fallback"), ("postcondition_failed", "recovered", "suggest_fix")]
    assert [c.name for c in omium.history("l-1")] == ["big_model", "summarize"]


def test_tool_allowlist_is_enforced_and_recorded(store):
    omium.policy.apply(os.path.join(os.path.dirname(__file__), "../../examples/policies/original-execution-config.yaml"))
    sent = []

    @omium.tool("email")
    def send_email(to):
        sent.append(to)

    @omium.tool("shell")
    def run_shell(cmd):
        raise AssertionError("must not run")

    @omium.checkpoint("act")
    def act():
        send_email("a@example.com")
        run_shell("rm -rf /")

    @omium.workflow("agent")
    def agent():
        return act()

    with pytest.raises(omium.ToolDeniedError, match='tool "shell" is not allowed in step "act".*allows email, database, api_call'):
        agent.run(execution_id="t-1")
    assert sent == ["a@example.com"], "a denied tool is not transient: the default retry does not apply"
    (f,) = omium.failures("t-1")
    assert (f.type, f.outcome) == ("tool_denied", "failed")
    send_email("outside any execution")  # no policy applies outside executions


def test_policy_timeout_applies_to_steps_without_their_own(store):
    omium.policy.apply("timeouts: {agent_execution: 100ms}", scope="step:sleepy")
    release = threading.Event()

    @omium.checkpoint("sleepy")
    def sleepy():
        release.wait(60)  # hangs until the test is done: only the timeout can cut it short

    @omium.workflow("timing")
    def timing():
        return sleepy()

    start = time.monotonic()
    try:
        with pytest.raises(omium.StepTimeoutError, match="within 0.1 s"):
            timing.run(execution_id="tm-1")
        assert time.monotonic() - start < 30, "the step was cut at its timeout, not waited for"
    finally:
        release.set()


def test_async_steps_recover_too(store):
    omium.policy.apply(f"rules: [{{trigger: error, actions: [{{retry: {FAST_RETRY}}}]}}]")
    calls = []

    @omium.checkpoint("flaky")
    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset by peer")
        return "ok"

    @omium.workflow("async_wf")
    async def wf():
        return await flaky()

    assert asyncio.run(wf.run(execution_id="a-1")) == "ok"
    (f,) = omium.failures("a-1")
    assert [(a["action"], a["outcome"]) for a in f.actions] == [("retry", "failed"), ("retry", "ok")]
    assert f.error_class == "ConnectionError"


def test_default_retry_of_the_policy_applies_to_transient_failures(store):
    omium.policy.apply("execution_config: {max_retries: 2}")
    calls = []

    @omium.checkpoint("fetch")
    def fetch():
        calls.append(1)
        raise TimeoutError("upstream")

    @omium.workflow("fetching")
    def fetching():
        return fetch()

    with pytest.raises(TimeoutError):
        fetching.run(execution_id="d-1")
    assert len(calls) == 3, "max_retries 2: three attempts in all"
    (f,) = omium.failures("d-1")
    assert (f.type, f.rule, f.outcome) == ("timeout_error", "default retry", "failed")


def test_step_retries_apply_when_no_rule_does(store):
    calls = []

    @omium.checkpoint("flaky", retries=2)
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("bad luck")
        return 3

    @omium.workflow("plain")
    def plain():
        return flaky()

    assert plain.run(execution_id="p-1") == 3
    (f,) = omium.failures("p-1")
    assert (f.rule, f.outcome) == ("step retries", "recovered")


def test_step_policy_argument_is_applied_once_per_change(store):
    @omium.checkpoint("guarded", policy={"rules": [{"trigger": "error", "actions": ["fail"]}], "defaults": {"step_timeout": "5s"}})
    def guarded():
        return 1

    @omium.workflow("g")
    def g():
        return guarded()

    g.run(execution_id="g-1")
    g.run(execution_id="g-2")
    (v,) = omium.policy.versions("step:guarded")
    assert (v.version, v.author, v.canonical["defaults"]) == (1, "omium.checkpoint(policy=...)", {"step_timeout": "5s"})


def test_policy_versions_diff_and_audit(store):
    omium.policy.apply("retries: {max_attempts: 2}", scope="workflow:w", author="alice")
    omium.policy.apply("retries: {max_attempts: 5}", scope="workflow:w", author="bob")
    vs = omium.policy.versions("workflow:w")
    assert [(v.version, v.author) for v in vs] == [(1, "alice"), (2, "bob")]
    assert omium.policy.get("workflow:w", 1).canonical["defaults"]["retry"]["max_attempts"] == 2
    d = omium.policy.diff("workflow:w", 1, 2)
    assert '-      "max_attempts": 2,' in d and '+      "max_attempts": 5,' in d
    assert omium.policy.diff("workflow:w", 2, 2) == ""
    assert "rules" in omium.policy.schema()["properties"]


def test_crashed_process_is_detected_and_recovered(store, tmp_path):
    path = os.fspath(store.path)
    omium.shutdown()
    worker = textwrap.dedent(f"""
        import os, omium
        omium.init(path={path!r}, durability="buffered")
        @omium.checkpoint("one")
        def one():
            return 1
        @omium.workflow("crashy")
        def crashy():
            one()
            os._exit(3)  # the process dies mid-run
        crashy.run(execution_id="cr-1")
    """)
    assert subprocess.run([sys.executable, "-c", worker], check=False).returncode == 3
    omium.init(path=path, durability="buffered")

    @omium.checkpoint("one")
    def one():
        return 1

    @omium.workflow("crashy")
    def crashy():
        return one() + 1

    # Its lease (30 s) belongs to a dead process of another store handle: resumable now.
    assert omium.recover() == {"cr-1": 2}
    (f,) = omium.failures("cr-1")
    assert (f.type, f.outcome) == ("process_crashed", "recovered")
    assert omium.recovery_metrics()["by_type"] == {"process_crashed": 1}


BROKEN_DIR = os.path.join(os.path.dirname(__file__), "policies", "broken")
# Each broken file and the message it must produce (file:line:column: path: problem ...).
with open(os.path.join(BROKEN_DIR, "expected.json")) as _f:
    BROKEN: dict[str, str] = json.load(_f)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_policy_files_are_rejected_with_their_location(name):
    path = os.path.join(BROKEN_DIR, name)
    with pytest.raises(omium.PolicyError) as e:
        omium.policy.validate(path)
    msg = str(e.value).replace(BROKEN_DIR + os.sep, "")
    assert BROKEN[name] in msg, msg
    assert e.value.file == path
    assert e.value.line and e.value.column


def test_policy_error_details_and_nothing_is_stored(store):
    with pytest.raises(omium.PolicyError) as e:
        omium.policy.apply("policies:\n  - trigger: timeout_error\n    action: auto_retyr\n")
    err = e.value
    assert (err.line, err.column, err.path, err.value, err.suggestion) == (3, 13, "policies[0].action", "auto_retyr", "auto_retry")
    assert "pause_and_notify" in err.expected
    assert omium.policy.versions() == []
    with pytest.raises(omium.InvalidArgumentError, match="expected global, workflow:<name>"):
        omium.policy.apply("{}", scope="everywhere")
    with pytest.raises(omium.PolicyError, match="cannot read the policy file"):
        omium.policy.validate("missing.yaml")
