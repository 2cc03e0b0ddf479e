"""A traced multi-agent run: two agents, LLM calls and tool calls, recorded as one trace.

The LLM is a deterministic stand-in (no network, no key); swap ``FakeProvider.chat`` for a real
client and nothing else changes. Prints the waterfall, writes the HTML timeline, then replays
the run from its recording without calling the "LLM" again.

    python examples/python/traced_agent.py [STORE_DIR]

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (e.g. a Phoenix or OpenTelemetry collector), the spans
are exported over OTLP/HTTP too (``make test-otlp`` does this against Arize Phoenix).
"""

from __future__ import annotations

import sys
import tempfile

import omium


class FakeProvider:
    """Answers like a chat API would, and counts the calls it was paid for."""

    calls = 0

    def chat(self, *, model: str, messages: list[dict], temperature: float = 0.0) -> dict:
        FakeProvider.calls += 1
        question = messages[-1]["content"]
        return {
            "model": model,
            "content": f"[{model}] considered: {question}",
            "usage": {"input_tokens": 12 * len(messages) + len(question) // 4, "output_tokens": 24},
        }


provider = FakeProvider()
omium.set_pricing("small-model", input_per_1k=0.0005, output_per_1k=0.0015)


@omium.tool("credit_bureau")
def credit_bureau(customer_id: str) -> dict:
    return {"customer": customer_id, "score": 712}


@omium.tool("send_email", side_effect=True)
def send_email(to: str, body: str) -> str:
    print(f"    (email to {to}: {body[:40]}...)")
    return "queued"


@omium.checkpoint("kyc", agent="kyc_agent")
def kyc(customer: dict) -> dict:
    with omium.trace("kyc_agent", span_type="agent", role="identity verification"):
        answer = omium.llm_call(
            provider.chat,
            provider="fake",
            model="small-model",
            messages=[{"role": "user", "content": f"Are {customer['documents']} enough to verify {customer['name']}?"}],
        )
    return {"verified": True, "note": answer["content"]}


@omium.checkpoint("credit", agent="credit_agent")
def credit(customer: dict, kyc_result: dict) -> dict:
    with omium.trace("credit_agent", span_type="agent", role="credit scoring"):
        bureau = credit_bureau(customer["id"])
        answer = omium.llm_call(
            provider.chat,
            provider="fake",
            model="small-model",
            messages=[{"role": "user", "content": f"Offer for score {bureau['score']}?"}],
        )
        send_email("ops@example.com", answer["content"])
    return {"score": bureau["score"], "offer": answer["content"]}


@omium.workflow("traced_onboarding")
def onboarding(customer: dict) -> dict:
    return credit(customer, kyc(customer))


def main(store_dir: str) -> None:
    omium.init(path=store_dir, project="traced-demo", durability="buffered")
    customer = {"id": "cust-9", "name": "Grace Hopper", "documents": ["passport"]}
    onboarding.run(customer, execution_id="cust-9")
    print(omium.trace_text("cust-9"))
    page = f"{store_dir}/cust-9.html"
    omium.trace_html("cust-9", page)
    print(f"timeline: {page}")
    paid = FakeProvider.calls
    replayed = omium.replay("cust-9")
    assert FakeProvider.calls == paid, "a replay answers from the recording"
    changed = [d.position for d in omium.diff("cust-9", replayed.execution_id) if d.differs]
    print(f"replayed as {replayed.execution_id} with no LLM call; differences: {changed or 'none'}")
    omium.shutdown()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="omium-traced-"))
