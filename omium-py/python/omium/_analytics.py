"""Execution analytics: ``omium.metrics(since="7d", by="workflow")``.

The figures are computed by the core from rollups kept as events are written (see
``docs/operations.md``), so a query reads a few cells whatever the number of executions.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable
from typing import Any

from . import _runtime

_Time = str | int | _dt.datetime | _dt.timedelta | None


def _time(what: str, t: _Time) -> str | int | None:
    if t is None or isinstance(t, (str, int)) and not isinstance(t, bool):
        return t
    if isinstance(t, _dt.timedelta):
        return f"{int(t.total_seconds())}s"
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            raise TypeError(f"{what}: a naive datetime is ambiguous; give it a timezone (datetime.timezone.utc)")
        return int(t.timestamp() * 1000)
    raise TypeError(f"{what}: expected a duration ('7d'), a date string, milliseconds, a datetime or a timedelta, not {t!r}")


def metrics(
    since: _Time = None,
    until: _Time = None,
    *,
    by: str | Iterable[str] | None = None,
    workflow: str | None = None,
    tenant: str | None = None,
    agent: str | None = None,
    step: str | None = None,
) -> dict[str, Any]:
    """Execution analytics over a window (default: the last 24 hours).

    ``since``/``until``: a duration before now (``"7d"``, ``timedelta(hours=6)``), a date
    (``"2026-11-01"``), a UTC time, an aware ``datetime`` or milliseconds since 1970. ``by``:
    ``workflow``, ``agent``, ``tenant``, ``step``, ``failure_type``, ``hour``, ``day``,
    ``week``, ``month`` (a comma-separated string or a list). Returns ``{"since", "until",
    "by", "totals", "groups"}``; each figures dict has ``started``, ``completed``,
    ``failed``, ``success_rate``, ``execution_p50_ms`` / ``p95`` / ``p99``, ``steps``,
    ``step_p95_ms``, ``failures_by_type``, ``failure_rate_by_type``, ``mttr_ms``,
    ``retries``, ``rollbacks``, ``llm_cost_usd``, ``cost_per_execution_usd``,
    ``cost_saved_usd`` and more (``docs/operations.md``)."""
    query: dict[str, Any] = {"since": _time("since", since), "until": _time("until", until)}
    if by is not None:
        query["by"] = by if isinstance(by, str) else list(by)  # the core splits "workflow,day"
    for k, v in (("workflow", workflow), ("tenant", tenant), ("agent", agent), ("step", step)):
        if v is not None:
            query[k] = v
    return json.loads(_runtime.store().metrics(json.dumps(query)))


def spend_metadata(tokens_in: float | None, tokens_out: float | None, cost_usd: float | None) -> dict[str, str]:
    """Checkpoint metadata of what a step spent (the keys the core's analytics read); a value
    of None is left out."""
    out = {}
    if tokens_in is not None:
        out["omium.tokens_in"] = str(int(tokens_in))
    if tokens_out is not None:
        out["omium.tokens_out"] = str(int(tokens_out))
    if cost_usd is not None:
        out["omium.cost_usd"] = repr(round(cost_usd, 8))
    return out


def record_spend(*, cost_usd: float = 0.0, tokens_in: int = 0, tokens_out: int = 0) -> None:
    """Reports what the running step spent (an LLM call made without ``omium.llm_call``, a paid
    API): it is recorded with the step's checkpoint, counted in ``llm_cost_usd``, and when a
    resumed run answers the step from its checkpoint, in ``cost_saved_usd``. Calls add up.
    Outside the body of an ``@omium.checkpoint`` step it raises ``RuntimeError``."""
    spend = _runtime.current_spend.get()
    if spend is None:
        raise RuntimeError("omium.record_spend() is called inside the body of an @omium.checkpoint step, to record what that step spent")
    for k, v in (("cost_usd", cost_usd), ("tokens_in", tokens_in), ("tokens_out", tokens_out)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"record_spend: {k} must be a number >= 0, not {v!r}")
        spend[k] = spend.get(k, 0) + v


class Alerts:
    """Alert rules evaluated in a thread of this process (``omium.start_alerts``): every
    ``evaluate_every`` until ``stop()`` (or the end of a ``with`` block)."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def stop(self) -> None:
        self._native.stop()

    @property
    def running(self) -> bool:
        return self._native.running

    @property
    def last_error(self) -> str | None:
        """The last evaluation's error, if it failed (a rule is skipped, not the others)."""
        return self._native.last_error

    def __enter__(self) -> Alerts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _rules_text(rules: str | os.PathLike[str]) -> tuple[str, str | None]:
    """A rules document given as text, or as the path of a file."""
    if isinstance(rules, os.PathLike) or (isinstance(rules, str) and "\n" not in rules and rules.endswith((".yaml", ".yml", ".json"))):
        path = os.fspath(rules)
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    if not isinstance(rules, str):
        raise TypeError(f"alert rules: expected YAML or JSON text or a file path, not {rules!r}")
    return rules, None


# Evaluators started in this process: omium.shutdown() stops them (each holds the store open).
_started: list[Alerts] = []


def _stop_all() -> None:
    while _started:
        _started.pop().stop()


_runtime._before_close.append(_stop_all)


def start_alerts(rules: str | os.PathLike[str]) -> Alerts:
    """Evaluates alert rules (YAML or JSON text, or a ``.yaml``/``.json`` file) in a thread of
    this process until ``stop()``: threshold rules over ``omium.metrics`` that notify Slack,
    PagerDuty, email and signed webhooks (``docs/operations.md``, "Alert rules"). A daemon
    evaluates its own (``omium serve --alerts FILE``). ``omium.shutdown()`` stops it."""
    text, file = _rules_text(rules)
    a = Alerts(_runtime.store().start_alerts(text, file))
    _started.append(a)
    return a


def evaluate_alerts(rules: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Evaluates alert rules once now (a cron job's way): sends what changed and returns the
    transitions (``rule``, ``group``, ``status``, ``repeat``, ``value``, ``delivered``)."""
    text, file = _rules_text(rules)
    return json.loads(_runtime.store().evaluate_alerts(text, file))


def alerts() -> dict[str, Any]:
    """The alerts pending or firing (``state.alerts``), when the rules were last evaluated
    (``state.evaluated_ms``), and the rules an evaluator of this process (or the daemon) runs."""
    return json.loads(_runtime.store().alerts())


def acknowledge_alert(rule: str, *, group: dict[str, str] | None = None, by: str | None = None) -> list[dict[str, Any]]:
    """Acknowledges the firing alerts of ``rule`` (only ``group``'s, when given): no more
    repeats, and every channel hears it (PagerDuty's ``acknowledge``)."""
    return json.loads(_runtime.store().acknowledge_alert(rule, group, by))
