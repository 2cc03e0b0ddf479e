"""Omium's main demo: durable customer onboarding.

Three agents (KYC, credit scoring, offer) are plain Python functions with simulated LLM latency
and cost. The run starts in a child process, which is killed with SIGKILL mid-run; run again
with the same execution id it resumes, and the steps that had finished are not re-run (nor
re-paid). Then the execution is rolled back to ``kyc_doc_validated`` and re-run from there.

    python examples/python/onboarding.py [STORE_DIR]
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import omium

EXECUTION = "cust-42"
CUSTOMER = {"id": "cust-42", "name": "Ada Lovelace", "country": "GB", "income": 84_000, "documents": ["passport", "utility_bill"]}
spent = {"usd": 0.0, "calls": 0}


def llm(agent: str, prompt: str, seconds: float, usd: float) -> None:
    """A stand-in for an LLM call: it takes time and costs money."""
    print(f"    [{agent}] LLM call: {prompt} ({seconds:.1f} s, ${usd:.3f})", flush=True)
    time.sleep(seconds)
    spent["usd"] += usd
    spent["calls"] += 1
    # Recorded with the step's checkpoint: omium.metrics() sums it, and counts it as saved
    # when a resumed run answers the step from its checkpoint instead of paying again.
    omium.record_spend(cost_usd=usd, tokens_in=int(usd * 100_000), tokens_out=int(usd * 20_000))


@omium.checkpoint("kyc_doc_validated", postconditions=["result.verified == true"], agent="kyc_agent")
def verify_kyc(customer: dict) -> dict:
    llm("kyc_agent", f"check {', '.join(customer['documents'])} of {customer['name']}", 0.6, 0.012)
    return {"verified": True, "risk": "low", "checked": customer["documents"]}


@omium.checkpoint("credit_score", postconditions=["result.score >= 300 && result.score <= 850"], agent="credit_agent")
def credit_score(customer: dict, kyc: dict) -> dict:
    llm("credit_agent", f"score income {customer['income']} with {kyc['risk']} KYC risk", 0.8, 0.020)
    return {"score": 742, "band": "good"}


@omium.checkpoint("offer", agent="offer_agent")
def make_offer(customer: dict, credit: dict) -> dict:
    llm("offer_agent", f"draft an offer for a {credit['band']} score", 0.7, 0.018)
    return {"product": "Platinum card", "limit": credit["score"] * 20, "apr": 18.9}


@omium.checkpoint("welcome_email", agent="offer_agent")
def send_welcome(customer: dict, offer: dict) -> str:
    llm("offer_agent", "write the welcome email", 0.4, 0.006)
    return f"Dear {customer['name']}, your {offer['product']} with a limit of £{offer['limit']:,} is ready."


@omium.workflow("customer_onboarding")
def onboard(customer: dict) -> dict:
    kyc = verify_kyc(customer)
    credit = credit_score(customer, kyc)
    offer = make_offer(customer, credit)
    return {"offer": offer, "email": send_welcome(customer, offer)}


def worker(store: str) -> None:
    omium.init(path=store, project="onboarding")
    print(f"  [worker pid {os.getpid()}] running {EXECUTION}", flush=True)
    result = onboard.run(CUSTOMER, execution_id=EXECUTION)
    print(f"  [worker pid {os.getpid()}] done: {result['offer']['product']}, limit £{result['offer']['limit']:,}", flush=True)
    print(f"  [worker pid {os.getpid()}] LLM spend of this run: ${spent['usd']:.3f} in {spent['calls']} calls", flush=True)


def spawn(store: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", store])


def show(store: str, title: str) -> None:
    ro = omium.Store(store, read_only=True)
    e = ro.execution(EXECUTION)
    print(f"\n  == {title}: {EXECUTION} is {e['status']} (attempt {e['attempts']})")
    for c in ro.history(EXECUTION):
        print(f"     seq {c['seq']:<2} {c['name']:<34} {c['kind']:<9} {c['agent']:<13} {c['id']}")
    ro.close()


def main(store: str) -> None:
    print(f"Omium demo: durable customer onboarding (store {store})\n")
    print("1. Start the run in a child process; SIGKILL it after two steps")
    child = spawn(store)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.05)
        try:
            ro = omium.Store(store, read_only=True)
            done = len(ro.history(EXECUTION))
            ro.close()
        except omium.OmiumError:
            done = 0
        if done >= 2:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    print(f"  [demo] killed worker pid {child.pid} with SIGKILL")
    show(store, "after the crash")

    print("\n2. Run it again with the same execution id: it resumes; finished steps are not re-run")
    assert spawn(store).wait() == 0
    show(store, "after the resume")

    print("\n3. Roll back to kyc_doc_validated (the old branch stays readable)")
    omium.init(path=store)
    omium.rollback(EXECUTION, to="kyc_doc_validated", reason="credit bureau data was stale")
    omium.shutdown()
    show(store, "after the rollback")

    print("\n4. Re-run: only the steps after kyc_doc_validated run again")
    assert spawn(store).wait() == 0
    show(store, "final")

    omium.init(path=store)
    report = omium.verify()
    m = omium.metrics(since="1h")["totals"]
    omium.shutdown()
    verdict = "ok" if report.ok else "FAILED"
    print(f"\n  verify: {verdict} ({report.checkpoints} checkpoints on all branches, {report.audit_entries} audit entries)")
    print(
        f"  analytics: {m['started']} execution, {m['completed']} completed runs, {m['retries']} resumed runs, "
        f"{m['steps']} steps recorded; LLM spend ${m['llm_cost_usd']:.3f}"
    )
    print(f"  cost saved: ${m['cost_saved_usd']:.3f} — {m['replayed_steps']} steps answered from their checkpoints instead of re-run")
    print(f"  inspect it yourself: {omium_command()} --store {store} history {EXECUTION} --all")


def omium_command() -> str:
    """How to call the `omium` command that came with this package: by name when it is on the
    PATH, else by its path beside this interpreter (a virtualenv that is not activated)."""
    beside = os.path.join(os.path.dirname(sys.executable), "omium")
    found = shutil.which("omium")
    if found and os.path.realpath(found) == os.path.realpath(beside):
        return "omium"
    if os.path.exists(beside):
        return os.path.relpath(beside) if not os.path.relpath(beside).startswith("..") else beside
    return f"{sys.executable} -m omium"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        if len(sys.argv) > 1:
            store = sys.argv[1]
            if os.path.exists(store) and os.listdir(store):
                sys.exit(f"demo: {store} is not empty; pass a new or empty directory")
        else:
            store = os.path.join(tempfile.mkdtemp(prefix="omium-demo-"), "store")
        main(store)
