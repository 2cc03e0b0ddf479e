"""A CrewAI flow on Omium (no LLM calls): an order flow persisted with `@persist`, restored by
its id after the process ends, and paused for human feedback, then resumed.

    python examples/python/crewai_flow.py [STORE_DIR]
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import uuid
from pathlib import Path

for _var in ("CREWAI_DISABLE_TELEMETRY", "CREWAI_DISABLE_TRACKING", "OTEL_SDK_DISABLED"):
    os.environ.setdefault(_var, "true")

from crewai.flow.async_feedback.types import HumanFeedbackPending  # noqa: E402
from crewai.flow.flow import Flow, listen, start  # noqa: E402
from crewai.flow.human_feedback import human_feedback  # noqa: E402
from crewai.flow.persistence import persist  # noqa: E402
from omium.crewai import OmiumFlowPersistence  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402


class Order(BaseModel):
    id: str = ""
    customer: uuid.UUID = Field(default_factory=uuid.uuid4)
    placed_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    items: set[str] = Field(default_factory=set)
    status: str = "new"


class Later:
    """A feedback provider that pauses the flow (a real one would post to Slack, a ticket...)."""

    def request_feedback(self, context, flow):
        raise HumanFeedbackPending(context=context)


def order_flow(persistence: OmiumFlowPersistence):
    @persist(persistence)
    class OrderFlow(Flow[Order]):
        @start()
        def take_order(self):
            self.state.items |= {"keyboard", "mouse"}
            self.state.status = "taken"

        @listen(take_order)
        @human_feedback(message="Ship this order?", provider=Later())
        def review(self):
            return f"{len(self.state.items)} items for {self.state.customer}"

        @listen(review)
        def ship(self, result):
            self.state.status = f"shipped ({result.feedback})"
            return self.state.status

    return OrderFlow


def main(store: Path) -> None:
    p = OmiumFlowPersistence(store)
    flow = order_flow(p)()
    paused = flow.kickoff()
    order_id = paused.context.flow_id
    print(f"1. order {order_id[:8]}… paused at {paused.context.method_name!r}: {paused.context.message}")
    saved = p.load_state(order_id)
    # The JSON form, as CrewAI's own persistence returns it (placed_at is ISO text).
    print(f"   saved state: status={saved['status']!r} items={sorted(saved['items'])} placed_at={saved['placed_at']}")

    # Later, in another process: a new persistence object on the same store resumes the flow.
    p2 = OmiumFlowPersistence(store)
    resumed = order_flow(p2).from_pending(order_id, p2)
    print(f"2. resumed with feedback: {resumed.resume('yes, ship it')}")
    for h in p2.history(order_id):
        print(f"   - after {h['method_name']}: status={h['state']['status']!r} pending={h['pending_feedback']}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(Path(d) / "store")
