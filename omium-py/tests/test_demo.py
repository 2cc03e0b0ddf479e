"""The main demo (`make demo`) runs and shows what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "examples" / "python" / "onboarding.py"


def test_demo_kills_resumes_rolls_back_and_verifies(tmp_path):
    out = subprocess.run([sys.executable, str(DEMO), str(tmp_path / "store")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    parts = re.split(r"\n\d\. ", text)
    assert len(parts) == 5, text
    crash, resume, rollback, rerun = parts[1:]
    assert "killed worker pid" in crash and "after the crash: cust-42 is running" in crash
    # The resumed run calls the LLM only for the steps that had not finished.
    resumed_calls = resume.count("LLM call")
    assert 1 <= resumed_calls < 4
    assert "after the resume: cust-42 is completed" in resume
    assert "rollback to kyc_doc_validated" in rollback and "is pending" in rollback
    assert "check passport" not in rerun.split("== final")[0]
    assert rerun.count("LLM call") == 3
    assert "verify: ok" in text
    # The analytics count what resuming saved: the steps the resumed run and the re-run after
    # the rollback answered from their checkpoints, at the cost recorded when they first ran.
    saved = re.search(r"cost saved: \$([0-9.]+) — (\d+) steps answered", text)
    assert saved, text
    assert int(saved.group(2)) == (4 - resumed_calls) + 1, text
    assert float(saved.group(1)) >= 0.012 + 0.020 + 0.012 - 1e-9, text
