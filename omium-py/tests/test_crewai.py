"""CrewAI flows (no LLM) on OmiumFlowPersistence: @persist at class and method level, a flow
restored by id in a new process-like setting (new persistence object on the reopened store),
states with datetime, UUID, set, Decimal, Path and user-class fields, dict states, pending
human feedback with a real @human_feedback flow paused and resumed — and, state for state,
the same answers as CrewAI's own SQLiteFlowPersistence."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from crewai.flow.flow import Flow, listen, start
from crewai.flow.persistence import persist
from omium import crewai as omium_crewai
from omium.codecs import get_codec
from omium.crewai import OmiumFlowPersistence
from pydantic import BaseModel, Field


@pytest.fixture(autouse=True)
def _fresh_store_registry():
    yield
    for s in omium_crewai._stores.values():
        s.close()
    omium_crewai._stores.clear()


class Order(BaseModel):
    id: str = ""
    placed_at: dt.datetime = Field(default_factory=lambda: dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    customer: uuid.UUID = Field(default_factory=lambda: uuid.UUID("12345678-1234-5678-1234-567812345678"))
    tags: set[str] = Field(default_factory=set)
    total: Decimal = Decimal("0")
    steps: list[str] = Field(default_factory=list)


def make_flow(persistence):
    @persist(persistence)
    class OrderFlow(Flow[Order]):
        @start()
        def receive(self):
            self.state.steps.append("receive")
            self.state.tags.add("new")
            self.state.total += Decimal("10.50")

        @listen(receive)
        def ship(self):
            self.state.steps.append("ship")
            self.state.tags.add("shipped")
            self.state.placed_at = self.state.placed_at + dt.timedelta(days=1)
            return "shipped"

    return OrderFlow


def test_structured_state_round_trips_as_crewai_stores_it(tmp_path):
    path = tmp_path / "store"
    flow = make_flow(OmiumFlowPersistence(path))()
    assert flow.kickoff() == "shipped"
    flow_id = flow.state.id

    # A new persistence object on the reopened store (as a new process would have).
    for s in omium_crewai._stores.values():
        s.close()
    omium_crewai._stores.clear()
    p = OmiumFlowPersistence(path)
    stored = p.load_state(flow_id)
    # The JSON form, as CrewAI's SQLite persistence gives it back.
    assert stored["placed_at"] == "2026-01-03T03:04:05Z"
    assert stored["customer"] == "12345678-1234-5678-1234-567812345678"
    assert sorted(stored["tags"]) == ["new", "shipped"]
    assert stored["total"] == "10.50"
    assert stored["steps"] == ["receive", "ship"]

    # Restoring by id: the flow continues from the stored state.
    again = make_flow(p)()
    again.kickoff(inputs={"id": flow_id})
    assert again.state.steps == ["receive", "ship", "receive", "ship"]
    assert again.state.tags == {"new", "shipped"}
    assert again.state.total == Decimal("21.00")
    assert again.state.placed_at == dt.datetime(2026, 1, 4, 3, 4, 5, tzinfo=dt.timezone.utc)

    # Every save is kept: the history, newest first, names the method that saved it.
    history = p.history(flow_id)
    assert [h["method_name"] for h in history] == ["ship", "receive", "ship", "receive"]
    assert history[-1]["state"]["steps"] == ["receive"]


def test_method_level_persist_and_dict_state(tmp_path):
    p = OmiumFlowPersistence(tmp_path / "store", durability="buffered")

    class Counter(Flow[dict]):
        @start()
        @persist(p)
        def one(self):
            self.state["n"] = 1
            self.state["when"] = dt.date(2026, 11, 27)
            self.state["ids"] = {uuid.UUID(int=1), uuid.UUID(int=2)}

        @listen(one)
        @persist(p)
        def two(self):
            self.state["n"] += 1

    flow = Counter()
    flow.kickoff()
    stored = p.load_state(flow.state["id"])
    assert stored["n"] == 2
    assert stored["when"] == "2026-11-27"
    assert sorted(stored["ids"]) == [str(uuid.UUID(int=1)), str(uuid.UUID(int=2))]
    assert p.load_state("no-such-flow") is None


def test_two_persistence_objects_share_one_store(tmp_path):
    a = OmiumFlowPersistence(tmp_path / "store")
    b = OmiumFlowPersistence(tmp_path / "store")
    a.save_state("f1", "m", {"id": "f1", "x": 1})
    assert b.load_state("f1") == {"id": "f1", "x": 1}


def test_bad_input_is_refused_clearly(tmp_path):
    p = OmiumFlowPersistence(tmp_path / "store")
    with pytest.raises(ValueError, match="state_data must be a pydantic BaseModel or a dict, got list"):
        p.save_state("f1", "m", [1, 2])
    with pytest.raises(ValueError, match="flow_uuid must be a non-empty str"):
        p.save_state("", "m", {})
    with pytest.raises(Exception, match="durability"):
        OmiumFlowPersistence(tmp_path / "other", durability="fast")


def test_human_feedback_pauses_and_resumes_from_the_store(tmp_path):
    from crewai.flow.async_feedback.types import HumanFeedbackPending
    from crewai.flow.human_feedback import human_feedback

    class Later:
        """An async feedback provider: pauses the flow instead of asking on the console."""

        def request_feedback(self, context, flow):
            raise HumanFeedbackPending(context=context)

    path = tmp_path / "store"

    def make(p):
        @persist(p)
        class Review(Flow[dict]):
            @start()
            @human_feedback(message="Approve the draft?", provider=Later())
            def draft(self):
                self.state["draft"] = "v1"
                return "draft v1"

            @listen(draft)
            def publish(self, result):
                self.state["feedback"] = result.feedback
                return f"published with {result.feedback!r}"

        return Review

    p = OmiumFlowPersistence(path)
    result = make(p)().kickoff()
    assert isinstance(result, HumanFeedbackPending)
    flow_id = result.context.flow_id
    state, context = p.load_pending_feedback(flow_id)
    assert state["draft"] == "v1"
    assert context.method_name == "draft"
    assert context.message == "Approve the draft?"

    for s in omium_crewai._stores.values():
        s.close()
    omium_crewai._stores.clear()
    p = OmiumFlowPersistence(path)
    flow = make(p).from_pending(flow_id, p)
    out = flow.resume("looks good")
    assert out == "published with 'looks good'"
    assert p.load_pending_feedback(flow_id) is None
    assert p.load_state(flow_id)["feedback"] == "looks good"


class Thing:
    """A user's own class, as a flow state may hold one."""

    def __str__(self) -> str:
        return "a thing"


def test_every_state_reads_back_as_crewais_own_persistence_reads_it(tmp_path):
    from crewai.flow.persistence.sqlite import SQLiteFlowPersistence

    sqlite = SQLiteFlowPersistence(str(tmp_path / "flows.db"))
    ours = OmiumFlowPersistence(tmp_path / "store")
    states = [
        {"id": "f", "trace_id": 2**100, "when": dt.datetime(2026, 1, 1), "tags": ("x", "y")},
        {"id": "f", "path": Path("/srv/reports/q3.pdf"), "amount": Decimal("12.50"), "thing": Thing(), "ids": [uuid.UUID(int=7)]},
        {"id": "f", "day": dt.date(2026, 12, 5), "nested": {"at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "n": None}},
        Order(id="f", tags={"a"}, total=Decimal("3.10")),
    ]
    for i, state in enumerate(states):
        flow = f"flow-{i}"
        sqlite.save_state(flow, "step", state)
        ours.save_state(flow, "step", state)
        assert ours.load_state(flow) == sqlite.load_state(flow), state
    assert ours.load_state("flow-1")["path"] == "/srv/reports/q3.pdf"
    assert ours.load_state("flow-1")["thing"] == "a thing"

    # Pending feedback: the same state and context back.
    from crewai.flow.async_feedback.types import PendingFeedbackContext

    context = PendingFeedbackContext(
        flow_id="flow-9", flow_class="tests.Review", method_name="review", method_output={"draft": Path("/d")}, message="ok?"
    )
    for p in (sqlite, ours):
        p.save_pending_feedback("flow-9", context, {"id": "flow-9", "at": dt.date(2026, 1, 2), "cost": Decimal("1.5")})
    (s_state, s_ctx), (o_state, o_ctx) = sqlite.load_pending_feedback("flow-9"), ours.load_pending_feedback("flow-9")
    assert o_state == s_state
    assert o_ctx.to_dict() == s_ctx.to_dict()
    # The marker stays through later saves (with the state of when it was asked) until cleared.
    for p in (sqlite, ours):
        p.save_state("flow-9", "next", {"id": "flow-9", "moved": True})
    assert ours.load_state("flow-9") == sqlite.load_state("flow-9") == {"id": "flow-9", "moved": True}
    (s_state, s_ctx), (o_state, o_ctx) = sqlite.load_pending_feedback("flow-9"), ours.load_pending_feedback("flow-9")
    assert o_state == s_state == {"id": "flow-9", "at": "2026-01-02", "cost": "1.5"}
    assert o_ctx.to_dict() == s_ctx.to_dict()
    for p in (sqlite, ours):
        p.clear_pending_feedback("flow-9")
        assert p.load_pending_feedback("flow-9") is None
    assert ours.load_state("flow-9") == sqlite.load_state("flow-9")


def test_states_stored_typed_by_earlier_versions_read_in_the_json_form(tmp_path):
    p = OmiumFlowPersistence(tmp_path / "store")
    # What the previous version wrote: Omium's msgpack codec, typed.
    old = {"id": "f", "when": dt.datetime(2026, 1, 1), "tags": {"x"}, "total": Decimal("2.5")}
    p._threads.put(
        "f",
        omium_crewai._NS,
        omium_crewai._next_id(),
        None,
        (omium_crewai._FORMAT, b""),
        ("msgpack", get_codec("msgpack").encode({"method_name": "m", "pending_feedback": False})),
        [("method_name", '"m"')],
        None,
        [("state", "1")],
        [("state", "1", "msgpack", get_codec("msgpack").encode(old))],
    )
    assert p.load_state("f") == {"id": "f", "when": "2026-01-01T00:00:00", "tags": ["x"], "total": "2.5"}
