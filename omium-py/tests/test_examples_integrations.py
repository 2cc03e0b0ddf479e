"""The integration examples (examples/python/langgraph_agent.py, crewai_flow.py,
pydantic_ai_agent.py, openai_agents_run.py) run and show what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"


def run(name: str, store: Path) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / name), str(store)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_langgraph_example_pauses_resumes_and_forks(tmp_path):
    text = run("langgraph_agent.py", tmp_path / "store")
    assert "paused: refund 120 EUR to ada?" in text
    assert "waiting at: ('approval',)" in text
    assert "- refund sent (120 EUR)" in text
    assert "fork: refund sent (80 EUR)" in text
    assert "original branch still reads: refund sent (120 EUR)" in text
    assert (tmp_path / "store" / "CURRENT").exists()


def test_crewai_example_persists_pauses_and_resumes(tmp_path):
    text = run("crewai_flow.py", tmp_path / "store")
    assert "paused at 'review': Ship this order?" in text
    assert "saved state: status='taken' items=['keyboard', 'mouse']" in text
    assert "2. resumed with feedback: shipped (yes, ship it)" in text
    history = [line.strip() for line in text.splitlines() if line.strip().startswith("- after")]
    assert history == [
        "- after ship: status='shipped (yes, ship it)' pending=False",
        "- after review: status='taken' pending=False",
        # The resumed flow saves before it clears the marker, which (as in CrewAI's own
        # persistence) stays until cleared.
        "- after review: status='taken' pending=True",
        "- after review: status='taken' pending=True",
        "- after take_order: status='taken' pending=False",
    ]


def test_pydantic_ai_example_resumes_after_a_crash_inside_a_tool_call(tmp_path):
    text = run("pydantic_ai_agent.py", tmp_path / "store")
    resumed = text.split("2. the same execution")[1]
    # After the crash only the tool call in flight and the last model request run.
    assert [line.strip() for line in resumed.splitlines() if line.strip().endswith("(live)")] == [
        "ship o-7 (live)",
        "model request 3 (live)",
    ], text
    assert "output: order o-7 charged and shipped" in text


def test_openai_agents_example_resumes_hands_off_and_traces(tmp_path):
    text = run("openai_agents_run.py", tmp_path / "store")
    resumed = text.split("2. the same execution")[1]
    assert [line.strip() for line in resumed.splitlines() if line.strip().endswith("(live)")] == [
        "ship o-7 (live)",
        "orders model call (live)",
        "closer model call (live)",
    ], text
    assert "output: order o-7 closed" in text
    assert "handoff orders -> closer" in text and "execute_tool ship" in text
