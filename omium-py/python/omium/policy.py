"""Recovery policies: load and validate a policy document (YAML or JSON), apply it to a scope
of the store as a new version, list, read and diff versions.

A document may use the canonical sections (``rules``, ``defaults``, ``classify``,
``channels``) and the shapes of the original design (``policies``; ``timeouts`` + ``retries`` +
``recovery``; ``execution_config``); all map to one canonical form: ordered rules, each a
trigger plus an optional CEL matcher leading to ordered actions. Scopes are ``global``,
``workflow:<name>``, ``step:<name>`` and ``step:<workflow>/<name>``; the most specific wins.
``docs/policies.md`` is the reference.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from . import _omium, _recovery, _runtime
from .errors import PolicyError

__all__ = ["Policy", "PolicyError", "PolicyVersion", "apply", "diff", "get", "load", "schema", "validate", "versions"]


@dataclass(frozen=True)
class Policy:
    """A validated policy: its canonical form (``rules``, ``defaults``, ``classify``,
    ``channels``), the text it came from and the file, if any."""

    canonical: dict[str, Any]
    source: str
    file: str | None = None

    @property
    def rules(self) -> list[dict[str, Any]]:
        return list(self.canonical.get("rules", []))

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(self.canonical.get("defaults", {}))

    def to_json(self) -> str:
        return json.dumps(self.canonical, indent=2)


@dataclass(frozen=True)
class PolicyVersion:
    tenant: str
    scope: str
    version: int
    author: str
    created_at: _dt.datetime
    file: str | None
    source: str
    canonical: dict[str, Any]
    digest: str

    @staticmethod
    def of(d: dict[str, Any]) -> PolicyVersion:
        return PolicyVersion(
            tenant=d["tenant"],
            scope=d["scope"],
            version=d["version"],
            author=d["author"],
            created_at=_dt.datetime.fromtimestamp(d["created_at_ms"] / 1000, tz=_dt.timezone.utc),
            file=d["file"],
            source=d["source"],
            canonical=json.loads(d["canonical"]),
            digest=d["digest"],
        )

    @property
    def policy(self) -> Policy:
        return Policy(self.canonical, self.source, self.file)


def _text_of(doc: Any) -> tuple[str, str | None]:
    """The text of a document given as a path, a text, a dict or a Policy."""
    if isinstance(doc, Policy):
        return doc.source, doc.file
    if isinstance(doc, dict):
        return json.dumps(doc), None
    if isinstance(doc, os.PathLike) or (isinstance(doc, str) and "\n" not in doc and doc.endswith((".yaml", ".yml", ".json"))):
        path = os.fspath(doc)
        try:
            with open(path, encoding="utf-8") as f:
                return f.read(), path
        except OSError as e:
            raise PolicyError(f"{path}: cannot read the policy file: {e.strerror}", {"file": path}) from None
    if isinstance(doc, str):
        return doc, None
    raise TypeError(f"a policy must be a path, YAML or JSON text, a dict or an omium.policy.Policy, not {type(doc).__name__}")


def validate(doc: Any, *, file: str | None = None) -> Policy:
    """Validates a policy (a path, YAML or JSON text, or a dict) and returns it; an invalid one
    raises :class:`~omium.PolicyError` naming file, line, column, the bad value and the valid
    choices."""
    text, path = _text_of(doc)
    canonical = _omium.parse_policy(text, file or path)
    return Policy(json.loads(canonical), text, file or path)


load = validate


def apply(doc: Any, *, scope: str = "global", tenant: str | None = None, author: str | None = None) -> PolicyVersion:
    """Validates a policy and stores it as the next version of ``scope`` (``global``,
    ``workflow:<name>``, ``step:<name>``, ``step:<workflow>/<name>``), with an audit entry."""
    text, path = _text_of(doc)
    store = _runtime.store()
    v = PolicyVersion.of(json.loads(store.apply_policy(_tenant(tenant), scope, text, path, author)))
    _recovery.forget_defaults()
    return v


def versions(scope: str | None = None, *, tenant: str | None = None) -> list[PolicyVersion]:
    """Stored versions (oldest first) of one scope, or of every scope of the tenant."""
    return [PolicyVersion.of(d) for d in json.loads(_runtime.store().policy_versions(_tenant(tenant), scope))]


def get(scope: str = "global", version: int | None = None, *, tenant: str | None = None) -> PolicyVersion:
    """One version of a scope's policy (default: the one in force)."""
    return PolicyVersion.of(json.loads(_runtime.store().policy_version(_tenant(tenant), scope, version)))


def diff(scope: str, a: int, b: int | None = None, *, tenant: str | None = None) -> str:
    """A unified diff of the canonical forms of two versions of a scope (``b`` defaults to the
    latest); empty when they are equal."""
    va, vb = get(scope, a, tenant=tenant), get(scope, b, tenant=tenant)
    return _omium.policy_diff(
        f"{scope} v{va.version}", json.dumps(va.canonical, indent=2), f"{scope} v{vb.version}", json.dumps(vb.canonical, indent=2)
    )


def schema() -> dict[str, Any]:
    """The JSON Schema of policy documents (for editors)."""
    return json.loads(_omium.policy_schema())


def _tenant(tenant: str | None) -> str:
    if tenant is not None:
        return tenant
    return (_runtime.config().project or "default") if _runtime.is_initialized() else "default"


# Policies attached to steps with @omium.checkpoint(policy=...): applied to each store once.
_attached: dict[str, Policy] = {}
_synced: set[int] = set()
_attach_lock = threading.Lock()


def attach(doc: Any, scope: str) -> None:
    """Validates ``doc`` now (at decoration) and applies it to ``scope`` of each store the
    process uses, when it differs from the version in force there."""
    with _attach_lock:
        _attached[scope] = doc if isinstance(doc, Policy) else validate(doc)
        _synced.clear()


def sync_attached(store: Any, tenant: str) -> None:
    """Applies attached policies that the store's versions do not have yet."""
    key = id(store)
    if key in _synced or not _attached:
        return
    with _attach_lock:
        if key in _synced:
            return
        if not store.read_only:
            for scope, p in _attached.items():
                latest = json.loads(store.policy_versions(tenant, scope))
                if not latest or json.loads(latest[-1]["canonical"]) != p.canonical:
                    store.apply_policy(tenant, scope, p.source, p.file, "omium.checkpoint(policy=...)")
        _synced.add(key)
