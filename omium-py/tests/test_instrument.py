"""instrument_langgraph / instrument_crewai: real graphs and flows (no network: LangChain's
fake chat model, a plain tool) traced as Omium spans without changing their code."""

from __future__ import annotations

import omium


def by_name(spans):
    out = {}
    for s in spans:
        out.setdefault(s["name"], []).append(s)
    return out


def test_langgraph_nodes_llm_and_tool_calls_become_spans(store):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    omium.instrument_langgraph()
    omium.instrument_langgraph()  # idempotent

    @tool
    def lookup(city: str) -> str:
        """Weather of a city."""
        return f"sunny in {city}"

    model = GenericFakeChatModel(messages=iter([AIMessage(content="It is sunny.")]))

    class State(TypedDict):
        city: str
        facts: str
        answer: str

    def research(state: State) -> dict:
        return {"facts": lookup.invoke({"city": state["city"]})}

    def respond(state: State) -> dict:
        return {"answer": model.invoke(f"Summarise: {state['facts']}").content}

    g = StateGraph(State)
    g.add_node("research", research)
    g.add_node("respond", respond)
    g.add_edge(START, "research")
    g.add_edge("research", "respond")
    g.add_edge("respond", END)
    graph = g.compile()

    @omium.workflow("weather")
    def weather(city):
        return graph.invoke({"city": city})["answer"]

    assert weather.run("Paris", execution_id="lg-1") == "It is sunny."
    s = by_name(omium.spans("lg-1"))
    (root,) = s["workflow weather"]
    (graph_span,) = s["LangGraph"]
    (research_span,) = s["research"]
    (respond_span,) = s["respond"]
    (tool_span,) = s["execute_tool lookup"]
    (llm_span,) = [x for name, v in s.items() if name.startswith("chat ") for x in v]
    assert graph_span["parent"] == root["span_id"], "the graph run is a child of the workflow"
    assert research_span["parent"] == graph_span["span_id"]
    assert research_span["attributes"]["langgraph.node"] == "research"
    assert tool_span["parent"] == research_span["span_id"]
    assert tool_span["span_type"] == "tool" and tool_span["attributes"]["gen_ai.tool.name"] == "lookup"
    assert llm_span["parent"] == respond_span["span_id"]
    assert llm_span["span_type"] == "llm" and llm_span["kind"] == "client"
    assert llm_span["attributes"]["gen_ai.operation.name"] == "chat"
    assert len({x["trace_id"] for v in s.values() for x in v}) == 1


def test_crewai_flows_and_methods_become_spans(store):
    from crewai.events import crewai_event_bus
    from crewai.flow.flow import Flow, listen, start

    omium.instrument_crewai()

    class Greeting(Flow):
        @start()
        def pick(self):
            return "Ada"

        @listen(pick)
        def greet(self, name):
            return f"hello {name}"

    # CrewAI runs its handlers on a thread pool, so events arrive out of order: several kickoffs
    # make it likely that a "finished" is handled before its "started" at least once.
    for _ in range(8):
        assert Greeting().kickoff() == "hello Ada"
    crewai_event_bus.flush()
    omium._runtime.store().flush_spans()
    spans = [s for s in omium.spans("") if s["attributes"].get("crewai.flow") == "Greeting"]
    flows = [s for s in spans if s["name"] == "flow Greeting"]
    assert len(flows) == 8 and len(spans) == 24
    for flow in flows:
        s = by_name([x for x in spans if x["trace_id"] == flow["trace_id"]])
        assert {"pick", "greet"} <= set(s)
        assert s["pick"][0]["parent"] == flow["span_id"]
        assert s["greet"][0]["parent"] == flow["span_id"]
        assert flow["start_ns"] <= s["pick"][0]["start_ns"] <= s["pick"][0]["end_ns"] <= s["greet"][0]["start_ns"]
        assert s["greet"][0]["end_ns"] <= flow["end_ns"]
    assert flow["span_type"] == "chain" and s["greet"][0]["attributes"]["crewai.method"] == "greet"
