"""Writes docs/openapi.yaml, the OpenAPI document of `omium serve` (one entry per method of
omium-engine/src/serve). Run it after changing a method: `.venv/bin/python scripts/gen-openapi.py`;
omium-py/tests/test_serve.py checks the committed document is this script's output and that the
daemon's real answers match it."""

import sys
from pathlib import Path

import yaml


def S(**k):
    return {"type": "string", **k}


N = {"type": "string", "nullable": True}
INT = {"type": "integer", "minimum": 0}
B64 = {"type": "string", "format": "byte", "description": "base64"}
B64N = {"type": "string", "format": "byte", "nullable": True, "description": "base64"}


def R(name):
    return {"$ref": f"#/components/schemas/{name}"}


def A(item):
    return {"type": "array", "items": item}


STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJ = {"type": "object"}
EMPTY = {"type": "object", "maxProperties": 0}
AUDIT_HEAD = {
    "type": "object",
    "required": ["seq", "hash"],
    "properties": {"seq": {"type": "integer", "minimum": 1}, "hash": S(pattern="^[0-9a-f]{64}$")},
}
CHECKS = A({"type": "array", "minItems": 2, "maxItems": 2, "items": {}})

m = []  # (method, tag, summary, props, required, response)


def add(method, tag, summary, props=None, required=(), resp=None):
    m.append((method, tag, summary, props or {}, list(required), resp or EMPTY))


add(
    "begin",
    "runs",
    "Begin (or resume) a run of an execution and take its lease; the run is a session of this daemon. "
    "On the unix socket the session ends when the connecting process is gone (the kernel names it); "
    "over TCP when no call or heartbeat came within the lease.",
    {
        "execution_id": S(minLength=1),
        "workflow": S(),
        "tenant": S(),
        "input": B64N,
        "input_upload": S(description="an input sent in pieces with `upload` (instead of `input`)"),
        "labels": STR_MAP,
        "agent": S(),
        "lease_ttl": {"type": "number", "exclusiveMinimum": 0},
        "durability": {"type": "string", "enum": ["sync", "buffered", "none"], "nullable": True},
    },
    ["execution_id"],
    {"type": "object", "required": ["run", "execution"], "properties": {"run": S(), "execution": R("ExecutionRecord")}},
)
RUN = {"run": S(description="the id `begin` answered")}
add(
    "run.reserve",
    "runs",
    "Take the next position of the live branch.",
    RUN,
    ["run"],
    {"type": "object", "required": ["seq"], "properties": {"seq": INT}},
)
add(
    "run.recorded",
    "runs",
    "The recorded step at `seq` (or `key`) and its state, or `checkpoint: null`.",
    {**RUN, "seq": INT, "name": S(), "key": N},
    ["run", "seq", "name"],
    {
        "type": "object",
        "required": ["checkpoint"],
        "properties": {"checkpoint": {"allOf": [R("CheckpointRecord")], "nullable": True}, "state": B64},
    },
)
add(
    "run.record",
    "runs",
    "Record a step's result (or a snapshot) at `seq`.",
    {
        **RUN,
        "seq": INT,
        "name": S(),
        "state": B64,
        "state_upload": S(),
        "key": N,
        "agent": N,
        "kind": {"type": "string", "enum": ["step", "snapshot"]},
        "preconditions": CHECKS,
        "postconditions": CHECKS,
        "metadata": STR_MAP,
    },
    ["run", "seq", "name"],
    {"type": "object", "required": ["id"], "properties": {"id": S()}},
)
add(
    "run.upload",
    "runs",
    "Upload a piece of a large state or output (base64 of whole 3-byte groups, 8 MiB per piece by the "
    "bindings): without `upload`, a new upload starts; `run.record` with `state_upload` records it, "
    "`run.complete` with `output_upload` completes with it. A run's open uploads hold at most 4 GiB.",
    {**RUN, "upload": N, "data": B64},
    ["run", "data"],
    {"type": "object", "required": ["upload", "size"], "properties": {"upload": S(), "size": INT}},
)
add(
    "run.complete",
    "runs",
    "Complete the execution, with its output (inline, or sent in pieces: `output_upload`).",
    {**RUN, "output": B64N, "output_upload": S()},
    ["run"],
)
add(
    "upload",
    "runs",
    "Upload a piece of a large input before the `begin` that names it (`input_upload`): without `upload`, "
    "a new upload starts. Uploads are the caller's own; unused ones are dropped after 10 minutes.",
    {"upload": N, "data": B64},
    ["data"],
    {"type": "object", "required": ["upload", "size"], "properties": {"upload": S(), "size": INT}},
)
add("run.fail", "runs", "Fail the execution.", {**RUN, "error": S()}, ["run", "error"])
add("run.pause", "runs", "Pause the execution until a human resumes it.", {**RUN, "reason": S()}, ["run", "reason"])
add("run.heartbeat", "runs", "Renew the lease.", RUN, ["run"])
add(
    "run.check_control",
    "runs",
    "While step `step` awaits: carry out a pause or cancel an operator asked for (answered as the error "
    "`paused` / `cancelled`), or nothing. Clients poll it every 200 ms while an async step awaits.",
    {**RUN, "step": S()},
    ["run", "step"],
)
add("run.execution", "runs", "The execution as this run sees it.", RUN, ["run"], R("ExecutionRecord"))
add("run.close", "runs", "Release the run; without complete or fail the execution stays resumable.", RUN, ["run"])

EID = {"execution_id": S(minLength=1)}
CID = {"checkpoint_id": S(minLength=1)}
# Executions and checkpoints are answered as their record views; "record" is the exact serde form
# the daemon's own Rust client asks for (it rebuilds the core's structs).
FORM = {
    "form": {
        "type": "string",
        "enum": ["view", "record"],
        "description": "view (default): the record view every binding shows; record: the core's own serde form "
        "(ExecutionRecord, CheckpointRecord), for the daemon's Rust client",
    }
}
EIDF = {**EID, **FORM}
CIDF = {**CID, **FORM}
add("execution", "executions", "One execution.", EIDF, ["execution_id"], R("Execution"))
add("executions", "executions", "Every execution, newest first.", FORM, [], A(R("Execution")))
add(
    "resumable",
    "executions",
    "Executions left running by a worker that is gone, or rolled back since they last ran.",
    FORM,
    [],
    A(R("Execution")),
)
add("execution_input", "executions", "The execution's input bytes.", EID, ["execution_id"], R("Bytes"))
add("execution_output", "executions", "The execution's output bytes.", EID, ["execution_id"], R("Bytes"))
add("history", "checkpoints", "The live branch, first checkpoint first.", EIDF, ["execution_id"], A(R("Checkpoint")))
add("checkpoints", "checkpoints", "Every checkpoint of the execution (all branches).", EIDF, ["execution_id"], A(R("Checkpoint")))
add("branch", "checkpoints", "The branch ending at a checkpoint.", CIDF, ["checkpoint_id"], A(R("Checkpoint")))
add("checkpoint", "checkpoints", "One checkpoint.", CIDF, ["checkpoint_id"], R("Checkpoint"))
add(
    "read_state",
    "checkpoints",
    "A checkpoint's verified state bytes; with `view`, also the state decoded to JSON by the codec it was "
    "written with (`view` null for an application's own codec).",
    {**CID, "view": {"type": "boolean"}},
    ["checkpoint_id"],
    {
        "type": "object",
        "required": ["data"],
        "properties": {"data": B64N, "view": {}, "codec": N},
    },
)
add(
    "rollback",
    "checkpoints",
    "Roll back to a checkpoint (id or name), a consistent cut (`global_seq`), or the last consistent checkpoint; "
    "answers the rollback marker.",
    {**EIDF, "to": N, "global_seq": {"type": "integer", "minimum": 0, "nullable": True}, "reason": N},
    ["execution_id"],
    R("Checkpoint"),
)
add(
    "fork",
    "checkpoints",
    "Fork a new execution from a checkpoint, optionally with edited state.",
    {**EIDF, "at": S(), "new_execution_id": N, "state": B64N},
    ["execution_id", "at"],
    R("Execution"),
)
add(
    "verify",
    "checkpoints",
    "Verify checksums, chunks and the audit chain (and that it still holds `expect_head`, SEQ:HASH).",
    {"execution_id": N, "expect_head": N},
    [],
    {
        "type": "object",
        "required": ["executions", "checkpoints", "problems", "audit"],
        "properties": {
            "executions": INT,
            "checkpoints": INT,
            "problems": A(OBJ),
            "audit": {
                "type": "object",
                "required": ["entries", "problems", "head"],
                "properties": {"entries": INT, "problems": A(S()), "head": {**AUDIT_HEAD, "nullable": True}},
            },
        },
    },
)
add(
    "audit_head",
    "checkpoints",
    "The audit chain's last entry (null when nothing was audited yet).",
    {},
    [],
    {**AUDIT_HEAD, "nullable": True},
)
add(
    "delete_execution",
    "executions",
    "Delete an execution and its checkpoints.",
    EID,
    ["execution_id"],
    {"type": "object", "required": ["deleted"], "properties": {"deleted": INT}},
)
add("stats", "executions", "Space used by the store.", {}, [], OBJ)
add("failures", "recovery", "Failure records, of one execution or all.", {"execution_id": N}, [], A(R("Failure")))
add(
    "recovery_metrics",
    "recovery",
    "Recovery figures (recovery rate = recovered over settled failures, MTTR, failures by type), of one workflow or all.",
    {"workflow": N},
    [],
    OBJ,
)
TIME = {"oneOf": [S(), INT], "description": "a duration before now (7d), a date (2026-11-01), a UTC time or milliseconds"}
FIGURES = {
    "type": "object",
    "description": "docs/operations.md defines each figure; rates and percentiles are null when there is nothing to compute them over",
    "properties": {
        **{
            k: INT
            for k in (
                "started completed failed cancelled paused steps replayed_steps failures recovered "
                "retries rollbacks forks tokens_in tokens_out tokens_saved"
            ).split()
        },
        **{
            k: {"type": "number", "nullable": True}
            for k in (
                "success_rate execution_p50_ms execution_p95_ms execution_p99_ms step_p50_ms step_p95_ms "
                "step_p99_ms mttr_ms cost_per_execution_usd"
            ).split()
        },
        "llm_cost_usd": {"type": "number"},
        "cost_saved_usd": {"type": "number"},
        "failures_by_type": {"type": "object", "additionalProperties": INT},
        "failure_rate_by_type": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}
add(
    "metrics",
    "analytics",
    "Execution analytics over a window (default the last 24 hours), optionally grouped: executions, success rate, "
    "latency percentiles, failures by type, MTTR, retries, rollbacks, LLM cost and cost saved.",
    {
        "since": TIME,
        "until": TIME,
        "by": {
            "oneOf": [
                S(),
                A(S(enum=["workflow", "agent", "tenant", "step", "failure_type", "hour", "day", "week", "month"])),
            ]
        },
        "workflow": S(),
        "tenant": S(),
        "agent": S(),
        "step": S(),
        "failure_type": S(),
    },
    [],
    {
        "type": "object",
        "required": ["since", "until", "by", "totals", "groups"],
        "properties": {
            "since": S(),
            "until": S(),
            "since_ms": INT,
            "until_ms": INT,
            "by": A(S()),
            "totals": FIGURES,
            "groups": A(
                {
                    "type": "object",
                    "properties": {"key": STR_MAP, "figures": FIGURES},
                }
            ),
        },
    },
)
add(
    "resume",
    "recovery",
    "Resume a paused execution, optionally with a new state (`state` as bytes, or `state_json` as a JSON "
    "value encoded with the execution's codec); answers the failure that paused it, or null.",
    {**EID, "state": B64N, "state_json": {}, "by": N},
    ["execution_id"],
    {"allOf": [R("Failure")], "nullable": True},
)
add("record_crash", "recovery", "Record the crash of the worker that ran an execution.", EID, ["execution_id"], R("Failure"))
add(
    "start_recovery",
    "recovery",
    "Record a failure and open its handling (the worker drives it with `recovery.*`).",
    {
        **EID,
        "workflow": S(),
        "tenant": S(),
        "step": N,
        "seq": {"type": "integer", "nullable": True},
        "key": N,
        "agent": S(),
        "kind": N,
        "error_classes": A(S()),
        "message": S(),
        "retries": INT,
        "rollbacks_so_far": INT,
    },
    ["execution_id"],
    {"type": "object", "required": ["recovery", "record"], "properties": {"recovery": S(), "record": R("Failure")}},
)
REC = {"recovery": S(description="the id `start_recovery` answered")}
add(
    "recovery.next_directive",
    "recovery",
    "The next action of the policy.",
    REC,
    ["recovery"],
    {
        "type": "object",
        "required": ["name", "params"],
        "properties": {
            "name": {
                "type": "string",
                "enum": ["retry", "rollback", "pause", "notify", "escalate", "fallback", "suggest_fix", "inspect", "fail"],
            },
            "params": OBJ,
        },
    },
)
add("recovery.done", "recovery", "Record how the last action went.", {**REC, "ok": {"type": "boolean"}, "note": N}, ["recovery", "ok"])
add(
    "recovery.set_analysis",
    "recovery",
    "Record a root cause and a suggested fix.",
    {**REC, "root_cause": N, "suggested_fix": N},
    ["recovery"],
)
for o in ["recovered", "failed", "escalated", "paused", "rolled_back"]:
    add(f"recovery.{o}", "recovery", f"Close the failure as {o.replace('_', ' ')}.", REC, ["recovery"])
add(
    "recovery.send_webhooks",
    "recovery",
    "Send the channels' webhooks; answers [channel, error or null] pairs.",
    {**REC, "channels": A(S()), "event": S()},
    ["recovery", "channels", "event"],
    A(A({})),
)
add("recovery.payload", "recovery", "The notification body.", {**REC, "event": S()}, ["recovery", "event"], OBJ)
add("recovery.record", "recovery", "The failure record.", REC, ["recovery"], R("Failure"))
add("recovery.close", "recovery", "Forget the handling (it is dropped after 10 idle minutes anyway).", REC, ["recovery"])
TS = {"tenant": S(), "scope": S(description="global, workflow:NAME or step:WORKFLOW/STEP")}
add(
    "apply_policy",
    "policies",
    "Validate and store a policy version.",
    {**TS, "text": S(), "file": N, "author": N},
    ["tenant", "scope", "text"],
    OBJ,
)
add("policy_versions", "policies", "Policy versions of one scope, of a tenant, or of every tenant.", {"tenant": N, "scope": N}, [], A(OBJ))
add(
    "policy_version",
    "policies",
    "One policy version (the latest when `version` is absent).",
    {**TS, "version": {"type": "integer", "nullable": True}},
    ["tenant", "scope"],
    OBJ,
)
add(
    "policy_defaults",
    "policies",
    "The defaults in force for a step, most specific scope first.",
    {"tenant": S(), "workflow": N, "step": N},
    ["tenant"],
    {"type": "object", "required": ["defaults", "layers"], "properties": {"defaults": OBJ, "layers": A(S())}},
)
add("spans", "traces", "The spans of an execution.", EID, ["execution_id"], A(R("Span")))
add(
    "agent_graph",
    "traces",
    "Who handed work to whom in an execution's trace: its agents in the order they first started (`main` for "
    "spans of no agent), and an edge A → B when a span of B is the child of a span of A (else when B is the "
    "next agent to start), with how often.",
    EID,
    ["execution_id"],
    {
        "type": "object",
        "required": ["agents", "edges"],
        "properties": {
            "agents": A(S()),
            "edges": A(
                {
                    "type": "object",
                    "required": ["from", "to", "count"],
                    "properties": {"from": S(), "to": S(), "count": INT},
                }
            ),
        },
    },
)
add(
    "record_spans",
    "traces",
    "Store spans (workers send them in batches).",
    {"spans": A(OBJ)},
    ["spans"],
    {"type": "object", "required": ["recorded"], "properties": {"recorded": INT}},
)
add("flush_spans", "traces", "Wait until every span received is stored.", {}, [])
add(
    "alerts",
    "analytics",
    "The alerts that are pending or firing (`state`), when the rules were last evaluated, and the rules this "
    "daemon evaluates (`omium serve --alerts FILE`), summarized without any channel's URL, key or address.",
    {},
    [],
    {
        "type": "object",
        "required": ["state", "rules"],
        "properties": {
            "state": {
                "type": "object",
                "required": ["alerts", "evaluated_ms"],
                "properties": {"alerts": {"type": "object"}, "evaluated_ms": {"type": "integer", "minimum": 0}},
            },
            "rules": {"type": "object", "nullable": True},
        },
    },
)
TRANSITIONS = A(
    {
        "type": "object",
        "required": ["rule", "group", "status", "repeat", "value", "delivered"],
        "properties": {
            "rule": S(),
            "group": STR_MAP,
            "status": S(enum=["firing", "resolved", "acknowledged"]),
            "repeat": {"type": "boolean"},
            "value": {"type": "number", "nullable": True},
            "delivered": STR_MAP,
        },
    }
)
add(
    "alerts.ack",
    "analytics",
    "Acknowledge the firing alerts of a rule (those of `group`, when given): no more repeats, and every "
    "channel hears it (PagerDuty's `acknowledge`). Answers the transitions.",
    {"rule": S(minLength=1), "group": STR_MAP, "by": S()},
    ["rule"],
    TRANSITIONS,
)
API_KEY = {
    "type": "object",
    "required": ["id", "name", "tenant", "roles", "created_ms", "created_by"],
    "properties": {
        "id": S(),
        "name": S(),
        "tenant": S(),
        "roles": A(S()),
        "created_ms": INT,
        "created_by": S(),
        "revoked_ms": INT,
        "revoked_by": S(),
    },
}
ROLES = {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["reader", "worker", "operator", "admin"]}}
add(
    "keys.create",
    "security",
    "Issue an API key bound to a name, a tenant (`*`: every tenant and the store) and roles. The secret is in "
    "this answer only; the store keeps its SHA-256. Admin only.",
    {"name": S(minLength=1), "tenant": S(minLength=1), "roles": ROLES},
    ["name", "tenant", "roles"],
    {"type": "object", "required": ["key", "secret"], "properties": {"key": API_KEY, "secret": S()}},
)
add("keys.list", "security", "Every key, revoked ones included, without secrets. Admin only.", resp=A(API_KEY))
add(
    "keys.revoke",
    "security",
    "Revoke a key by id or name: its next request gets 401, without a restart. Admin only.",
    {"key": S(minLength=1)},
    ["key"],
    API_KEY,
)
add(
    "control",
    "operations",
    "An operator control of an execution: pause or cancel (a run that holds it stops at its next step "
    "boundary: result `requested`; otherwise `applied` at once), resume a paused one, retry a failed or "
    "cancelled one (both become resumable), recover one whatever stopped it (a run that died, a failure, a cancel, "
    "a pause: resumable again), delete one (its data and the chunks no other checkpoint "
    "uses; `erased` says what), roll one back (`to`), or escalate its open failure (settled as escalated; "
    "`failure` names it, `notified` says what each channel of its policy made of the notice). Recorded in the "
    "audit log with `by` and `reason`.",
    {
        "action": {"type": "string", "enum": ["pause", "cancel", "resume", "retry", "recover", "delete", "rollback", "escalate"]},
        "execution_id": S(minLength=1),
        "reason": S(),
        "by": S(),
        "to": S(description="rollback: a checkpoint id or name (default: the last consistent checkpoint)"),
    },
    ["action", "execution_id"],
    {
        "type": "object",
        "required": ["action", "execution", "result", "status"],
        "properties": {
            "action": S(),
            "execution": S(),
            "result": {"type": "string", "enum": ["applied", "requested"]},
            "status": N,
            "erased": {
                "type": "object",
                "description": "delete: what was erased: checkpoints, the chunks no other checkpoint used, failure records, spans",
                "properties": {k: INT for k in ("checkpoints", "chunks", "failures", "spans")},
            },
            "checkpoint": S(description="the checkpoint a rollback wrote"),
            "failure": S(description="the failure an escalation settled"),
            "notified": {
                "type": "object",
                "description": "escalate: per channel, `delivered` or why not",
                "additionalProperties": {"type": "string"},
            },
        },
    },
)
add(
    "executions.page",
    "executions",
    "One page of executions (storage order, stable as executions are added), filtered by status, workflow "
    "and tenant; pass `next` as `after` for the following page (null: no more). Reads at most 20,000 "
    "records per call, so a page may be short with a `next`.",
    {
        "limit": {"type": "integer", "minimum": 1, "maximum": 500},
        "after": N,
        "status": {"type": "string", "enum": ["pending", "running", "paused", "completed", "failed", "cancelled"]},
        "workflow": S(),
        "tenant": S(),
    },
    [],
    {"type": "object", "required": ["executions", "next"], "properties": {"executions": A(R("Execution")), "next": N}},
)
add(
    "audit",
    "security",
    "The audit log, newest first: entries before `before` (a seq), filtered by action prefix, actor and "
    "resource substring; `next_before` continues (null: no older entries). Store-wide: admin keys and "
    "callers over every tenant.",
    {
        "before": {"type": "integer", "minimum": 1, "nullable": True},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
        "action": N,
        "actor": N,
        "resource": N,
    },
    [],
    {
        "type": "object",
        "required": ["entries", "next_before", "head"],
        "properties": {
            "entries": A(
                {
                    "type": "object",
                    "required": ["seq", "at_ms", "actor", "action", "resource", "detail", "prev_hash", "hash"],
                    "properties": {
                        "seq": INT,
                        "at_ms": INT,
                        "actor": S(),
                        "action": S(),
                        "resource": S(),
                        "detail": S(),
                        "prev_hash": S(),
                        "hash": S(),
                    },
                }
            ),
            "next_before": {"type": "integer", "nullable": True},
            "head": {"allOf": [AUDIT_HEAD], "nullable": True},
        },
    },
)
add(
    "report",
    "operations",
    "The report of a period (a month `2026-11`, a day `2026-11-03`, or days `2026-11-01..2026-11-15`): JSON, "
    "or with `format` html, csv or pdf the file itself (Content-Disposition: attachment).",
    {"period": S(), "format": {"type": "string", "enum": ["json", "html", "csv", "pdf"]}},
    ["period"],
    OBJ,
)
add(
    "policy.validate",
    "policies",
    "Checks a policy document without applying it: `errors` name the line, column and path of what is wrong.",
    {"text": S()},
    ["text"],
    {
        "type": "object",
        "required": ["valid", "errors"],
        "properties": {
            "valid": {"type": "boolean"},
            "errors": A(
                {
                    "type": "object",
                    "required": ["line", "column", "message"],
                    "properties": {
                        "line": {"type": "integer", "nullable": True},
                        "column": {"type": "integer", "nullable": True},
                        "path": S(),
                        "message": S(),
                    },
                }
            ),
        },
    },
)
add(
    "whoami",
    "security",
    "The caller: its identity, tenant and roles, whether the store is read-only here, and for each method "
    "whether the caller may call it (`may`, what the dashboard enables).",
    {},
    [],
    {
        "type": "object",
        "required": ["identity", "tenant", "roles", "read_only", "may"],
        "properties": {
            "identity": S(),
            "tenant": S(),
            "roles": A(S()),
            "read_only": {"type": "boolean"},
            "store": N,
            "may": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
    },
)
add(
    "cluster",
    "operations",
    "The Raft cluster of the `omium node`s this server was given (`omium ui --node`): leader, term, the "
    "leader's commit index, and each member's role, state, applied index (`matched`) and lag, asked of each "
    "member once (an unreachable one says so in `state` and `error`); and the sync state of the executions "
    "stores pushed to it (newest 200; `here`: this store has the same head, is ahead with a push to come, "
    "is behind, or does not have it). Without nodes: `configured` false.",
    {},
    [],
    {
        "type": "object",
        "required": ["configured"],
        "properties": {
            "configured": {"type": "boolean"},
            "detail": S(),
            "leader": {"type": "integer", "nullable": True},
            "term": INT,
            "committed": {"type": "integer", "nullable": True},
            "nodes": A(
                {
                    "type": "object",
                    "required": ["id", "addr", "role", "state"],
                    "properties": {
                        "id": INT,
                        "addr": S(),
                        "role": {"type": "string", "enum": ["leader", "follower", "learner"]},
                        "state": S(),
                        "term": {"type": "integer", "nullable": True},
                        "matched": {"type": "integer", "nullable": True},
                        "lag": {"type": "integer", "nullable": True},
                        "error": N,
                    },
                }
            ),
            "executions": A(
                {
                    "type": "object",
                    "required": ["id", "tenant", "workflow", "status", "owner", "checkpoints", "here"],
                    "properties": {
                        "id": S(),
                        "tenant": S(),
                        "workflow": S(),
                        "status": S(),
                        "owner": S(),
                        "owner_host": S(),
                        "head": N,
                        "checkpoints": INT,
                        "lease_left_ms": INT,
                        "updated_at_ms": INT,
                        "log_index": INT,
                        "here": {"type": "string", "enum": ["in_sync", "ahead", "behind", "not_here"]},
                    },
                }
            ),
            "synced_total": INT,
            "sync_error": N,
        },
    },
)
add(
    "events",
    "events",
    "The event feed: the changes written after the cursor `since`, as CloudEvents, oldest first; "
    "with `wait_ms` (at most 30000) a long poll that answers as soon as a matching event is written. "
    "Store `cursor` and pass it as the next `since`.",
    {
        "since": INT,
        "limit": {"type": "integer", "minimum": 1, "maximum": 10000},
        "wait_ms": {"type": "integer", "minimum": 0},
        "types": A(S()),
        "execution_id": S(),
    },
    [],
    {
        "type": "object",
        "required": ["events", "cursor"],
        "properties": {"events": A(R("CloudEvent")), "cursor": INT},
    },
)

doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "omium serve",
        "version": "1",
        "description": "The API of an `omium serve` daemon: one store served to the worker processes of a machine "
        "(over a unix socket, or HTTP). Every method is `POST /v1/<method>` with a JSON object of arguments; "
        "errors answer 4xx/5xx with `{code, message}` (the codes of the embedded API). Bytes are base64. "
        "Callers send `Authorization: Bearer <key>` (not on /v1/health and this document): a key issued by "
        "`omium keys create` (a tenant and roles: reader, worker, operator, admin) or a bootstrap key "
        "(OMIUM_API_KEYS, admin). Over TCP a key is required once any exists or when not on loopback; the unix "
        "socket trusts its peers (its file mode chose them). Cedar policies decide each call: 403 `forbidden` "
        "when the roles do not allow it, and another tenant's execution answers 404 as if it did not exist. "
        "Over its rate a caller gets 429 `rate_limited` with Retry-After (docs/security.md). "
        "Every listener refuses a request with an `Origin` header (403) and a POST whose "
        "Content-Type is not application/json (415); on TCP, a `Host` that is not an address, localhost on "
        "loopback, or a name given with --allow-host is refused (403). "
        "Records are the core's (`Execution`, `Checkpoint`, `Failure`), field for field.",
    },
    "servers": [{"url": "http://127.0.0.1:7700"}],
    "components": {
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "a key from `omium keys create` (or a bootstrap key in OMIUM_API_KEYS)",
            }
        },
        "schemas": {
            "Error": {"type": "object", "required": ["code", "message"], "properties": {"code": S(), "message": S()}},
            "Bytes": {"type": "object", "required": ["data"], "properties": {"data": B64N}},
            "Lease": {
                "type": "object",
                "required": ["owner", "token", "host", "pid", "expires_at_ms"],
                "properties": {"owner": S(), "token": S(), "host": S(), "pid": INT, "expires_at_ms": INT},
            },
            "Execution": {
                "type": "object",
                "description": "The record view of an execution: the same JSON as the C API, the Node and Python "
                "bindings and `omium ... --json` give.",
                "required": [
                    "id",
                    "workflow",
                    "tenant",
                    "status",
                    "head",
                    "attempts",
                    "lease",
                    "labels",
                    "created_at_ms",
                    "updated_at_ms",
                    "checkpoint_count",
                    "has_input",
                    "has_output",
                ],
                "properties": {
                    "id": S(),
                    "workflow": S(),
                    "tenant": S(),
                    "status": {"type": "string", "enum": ["pending", "running", "paused", "completed", "failed", "cancelled"]},
                    "head": N,
                    "error": N,
                    "attempts": INT,
                    "lease_owner": N,
                    "lease_expires_at_ms": {"type": "integer", "nullable": True},
                    "lease": {"allOf": [R("Lease")], "nullable": True},
                    "labels": STR_MAP,
                    "created_at_ms": INT,
                    "updated_at_ms": INT,
                    "checkpoint_count": INT,
                    "has_input": {"type": "boolean"},
                    "has_output": {"type": "boolean"},
                },
            },
            "Checkpoint": {
                "type": "object",
                "description": "The record view of a checkpoint (its state is read with `read_state`): the same JSON "
                "as the C API, the Node and Python bindings and `omium ... --json` give.",
                "required": [
                    "id",
                    "execution_id",
                    "agent",
                    "name",
                    "kind",
                    "parent",
                    "seq",
                    "global_seq",
                    "checksum",
                    "raw_size",
                    "stored_size",
                    "storage",
                    "chunks",
                    "checks_passed",
                    "created_at_ms",
                ],
                "properties": {
                    "id": S(),
                    "execution_id": S(),
                    "agent": S(),
                    "name": S(),
                    "kind": {"type": "string", "enum": ["step", "snapshot", "fork", "rollback"]},
                    "parent": N,
                    "seq": INT,
                    "global_seq": INT,
                    "key": N,
                    "checksum": {"type": "string", "description": "blake3 of the state, lower-case hex"},
                    "raw_size": INT,
                    "stored_size": INT,
                    "storage": {"type": "string", "enum": ["inline", "chunked"]},
                    "chunks": INT,
                    "checks_passed": {"type": "boolean"},
                    "checks": OBJ,
                    "metadata": STR_MAP,
                    "created_at_ms": INT,
                },
            },
            "ExecutionRecord": {
                "description": "An execution in the core's own serde form (the run session methods, and `form: record`).",
                "type": "object",
                "required": [
                    "id",
                    "workflow",
                    "tenant",
                    "status",
                    "head",
                    "attempts",
                    "lease",
                    "labels",
                    "created_at_ms",
                    "updated_at_ms",
                    "checkpoint_count",
                    "has_input",
                    "has_output",
                ],
                "properties": {
                    "id": S(),
                    "workflow": S(),
                    "tenant": S(),
                    "status": {"type": "string", "enum": ["pending", "running", "paused", "completed", "failed", "cancelled"]},
                    "head": N,
                    "error": N,
                    "attempts": INT,
                    "lease": {"allOf": [R("Lease")], "nullable": True},
                    "labels": STR_MAP,
                    "created_at_ms": INT,
                    "updated_at_ms": INT,
                    "next_global_seq": INT,
                    "checkpoint_count": INT,
                    "has_input": {"type": "boolean"},
                    "has_output": {"type": "boolean"},
                },
            },
            "CheckpointRecord": {
                "description": "A checkpoint in the core's own serde form (the run session methods, and `form: record`).",
                "type": "object",
                "required": [
                    "id",
                    "execution_id",
                    "agent",
                    "name",
                    "kind",
                    "parent",
                    "seq",
                    "global_seq",
                    "checksum",
                    "raw_size",
                    "stored_size",
                    "state",
                    "created_at_ms",
                ],
                "properties": {
                    "id": S(),
                    "execution_id": S(),
                    "agent": S(),
                    "name": S(),
                    "kind": {"type": "string", "enum": ["step", "snapshot", "fork", "rollback"]},
                    "parent": N,
                    "seq": INT,
                    "global_seq": INT,
                    "key": N,
                    "checksum": {"type": "array", "items": INT, "minItems": 32, "maxItems": 32, "description": "blake3 of the state"},
                    "raw_size": INT,
                    "stored_size": INT,
                    "state": {"type": "object", "description": "where the state is: {Inline: [bytes]} or {Chunked: manifest}"},
                    "checks": OBJ,
                    "metadata": STR_MAP,
                    "created_at_ms": INT,
                },
            },
            "Failure": {
                "type": "object",
                "required": ["id", "execution_id", "kind", "outcome", "message"],
                "properties": {"id": S(), "execution_id": S(), "kind": S(), "outcome": S(), "message": S(), "actions": A(OBJ)},
            },
            "Span": {
                "type": "object",
                "required": ["trace_id", "span_id", "name", "start_ns", "end_ns", "status"],
                "properties": {
                    "trace_id": S(),
                    "span_id": S(),
                    "parent": N,
                    "name": S(),
                    "kind": S(),
                    "span_type": S(),
                    "execution_id": S(),
                    "agent": S(),
                    "start_ns": INT,
                    "end_ns": INT,
                    "status": {"type": "string", "enum": ["ok", "error", "unset"]},
                    "status_message": S(),
                    "attributes": OBJ,
                    "events": A(OBJ),
                },
            },
            "CloudEvent": {
                "type": "object",
                "description": "A change of the store in the CloudEvents 1.0 JSON format; `type` is io.omium.<event type> "
                "(docs/operations.md lists them), `id` and `omiumseq` its position in the feed.",
                "required": ["specversion", "id", "source", "type", "time", "datacontenttype", "omiumseq", "data"],
                "properties": {
                    "specversion": {"type": "string", "enum": ["1.0"]},
                    "id": S(),
                    "source": S(),
                    "type": S(pattern="^io\\.omium\\."),
                    "subject": S(),
                    "time": S(format="date-time"),
                    "datacontenttype": {"type": "string", "enum": ["application/json"]},
                    "omiumseq": {"type": "integer", "minimum": 1},
                    "omiumactor": S(),
                    "omiumresource": S(),
                    "data": OBJ,
                },
            },
        },
        "responses": {"Error": {"description": "the call failed", "content": {"application/json": {"schema": R("Error")}}}},
    },
    "security": [{}, {"apiKey": []}],
    "paths": {
        "/v1/health": {
            "get": {
                "tags": ["daemon"],
                "operationId": "health",
                "summary": "The daemon is up (liveness only: it needs no key and tells nothing else).",
                "security": [{}],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["status"],
                                    "additionalProperties": False,
                                    "properties": {"status": {"type": "string", "enum": ["ok"]}},
                                }
                            }
                        },
                    }
                },
            }
        },
        "/v1/status": {
            "get": {
                "tags": ["daemon"],
                "operationId": "status",
                "summary": "What the daemon serves: its store (null for a key of one tenant), durability, version, "
                "open runs, and who the caller is.",
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["store", "durability", "version", "runs", "caller"],
                                    "properties": {
                                        "store": S(nullable=True),
                                        "durability": S(),
                                        "version": S(),
                                        "runs": INT,
                                        "caller": {
                                            "type": "object",
                                            "required": ["actor", "tenant", "roles"],
                                            "properties": {"actor": S(), "tenant": S(), "roles": A(S())},
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "401": {"$ref": "#/components/responses/Error"},
                },
            }
        },
        "/v1/events/stream": {
            "get": {
                "tags": ["events"],
                "operationId": "events_stream",
                "summary": "The event feed as Server-Sent Events (text/event-stream): each event's `id` is its seq, "
                "its `event` the type, its `data` the CloudEvent JSON; a reconnecting client's `Last-Event-ID` "
                "resumes after that seq. A comment every 15 s keeps a quiet stream open.",
                "parameters": [
                    {"name": "since", "in": "query", "schema": INT, "description": "start after this seq (0: the first)"},
                    {"name": "types", "in": "query", "schema": S(), "description": "types or families, comma-separated"},
                    {"name": "execution_id", "in": "query", "schema": S()},
                    {"name": "Last-Event-ID", "in": "header", "schema": S(), "description": "overrides since"},
                ],
                "responses": {
                    "200": {"description": "the stream", "content": {"text/event-stream": {"schema": S()}}},
                    "400": {"$ref": "#/components/responses/Error"},
                    "401": {"$ref": "#/components/responses/Error"},
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["analytics"],
                "operationId": "prometheus_metrics",
                "summary": "The store's analytics for Prometheus (text format 0.0.4), all time: executions started and "
                "ended by status, retries, rollbacks, steps by agent, replayed steps, failures and recoveries by "
                "type, LLM tokens and cost, cost saved, execution and step duration histograms, per tenant and "
                "workflow (docs/operations.md).",
                "responses": {
                    "200": {"description": "the exposition", "content": {"text/plain": {"schema": S()}}},
                    "401": {"$ref": "#/components/responses/Error"},
                },
            }
        },
        "/openapi.yaml": {
            "get": {
                "tags": ["daemon"],
                "operationId": "openapi",
                "summary": "This document.",
                "security": [{}],
                "responses": {"200": {"description": "this document", "content": {"application/yaml": {"schema": S()}}}},
            }
        },
    },
}
for method, tag, summary, props, required, resp in m:
    body = {"type": "object", "properties": props}
    if required:
        body["required"] = required
    doc["paths"][f"/v1/{method}"] = {
        "post": {
            "tags": [tag],
            "operationId": method.replace(".", "_"),
            "summary": summary,
            "requestBody": {"required": bool(required), "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "done", "content": {"application/json": {"schema": resp}}},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "409": {"$ref": "#/components/responses/Error"},
                "422": {"$ref": "#/components/responses/Error"},
                "429": {"$ref": "#/components/responses/Error"},
                "500": {"$ref": "#/components/responses/Error"},
            },
        }
    }


def nullable_31(node):
    """`nullable: true` (written above for brevity) as OpenAPI 3.1 says it: a `null` type."""
    if isinstance(node, list):
        return [nullable_31(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: nullable_31(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if "allOf" in node:
            node["oneOf"] = node.pop("allOf") + [{"type": "null"}]
        else:
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = node["enum"] + [None]
    return node


doc = nullable_31(doc)


class D(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


text = "# The HTTP API of `omium serve` (served at GET /openapi.yaml; tests validate real answers against it).\n" + yaml.dump(
    doc, Dumper=D, sort_keys=False, width=110, allow_unicode=True
)
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"
out.write_text(text)
print(f"{out}: {len(m)} methods")
