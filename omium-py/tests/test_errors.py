"""Bad input: each raises a clear exception saying what, where and what to do, and the store
is left unchanged."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import omium
import pytest
from omium import _omium


def test_a_store_held_by_another_process_raises_store_locked(tmp_path):
    path = tmp_path / "held"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, omium
            omium.init(path={str(path)!r})
            print("ready", flush=True)
            sys.stdin.read()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(omium.StoreLockedError) as e:
            omium.init(path=path)
        assert f"store {path} is held by another process" in str(e.value)
        assert "stop that process, or inspect the store read-only" in str(e.value)
        # Read-only opens work meanwhile.
        ro = omium.Store(str(path), read_only=True)
        assert ro.executions() == []
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        omium.shutdown()


def test_a_missing_store_for_reading_is_reported_and_not_created(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(omium.StoreNotFoundError, match=f"no Omium store at {missing}"):
        omium.Store(str(missing), read_only=True)
    assert not missing.exists()


def test_wrong_argument_types_name_the_argument(store):
    with pytest.raises(TypeError, match="execution_id"):
        store.begin(42)
    with pytest.raises(TypeError, match="'state'"):
        store.begin("e").record(1, "n", "not bytes")
    with pytest.raises(omium.InvalidArgumentError, match='invalid durability: "fast"; expected one of'):
        omium.init(path=store.path, durability="fast")
    with pytest.raises(TypeError, match="durability=...\\) must be a str"):
        omium.init(path="x", durability=1)
    with pytest.raises(ValueError, match="lease_ttl must be a positive number"):
        _omium.Store.begin(omium._runtime.store(), "e2", lease_ttl=-1)


def test_bad_checkpoint_ids_and_kinds(store):
    with pytest.raises(omium.InvalidArgumentError, match='"zzz" is not a checkpoint id'):
        store.checkpoint("zzz")
    with pytest.raises(omium.CheckpointNotFoundError, match="unknown checkpoint 01J9Z3W4K5M6N7P8Q9R0S1T2V3"):
        store.read_state("01J9Z3W4K5M6N7P8Q9R0S1T2V3")
    run = store.begin("k")
    with pytest.raises(ValueError, match="kind must be 'step' or 'snapshot'"):
        run.record(run.reserve(), "n", b"", kind="fork")


def test_a_closed_store_says_so(tmp_path):
    s = omium.Store(str(tmp_path / "c"))
    s.close()
    assert s.closed
    with pytest.raises(omium.StoreClosedError, match="is closed"):
        s.executions()


def test_empty_execution_ids_are_rejected(store):
    with pytest.raises(omium.InvalidArgumentError, match="execution id: it is empty"):
        store.begin("")
    with pytest.raises(TypeError, match="expected a non-empty str"):
        with omium.execution(""):
            pass


def test_every_engine_code_maps_to_a_class():
    from omium.errors import BY_CODE, from_code

    for code, cls in BY_CODE.items():
        e = from_code(code, "m")
        assert type(e) is cls and e.code == code and str(e) == "m"
    assert type(from_code("something_new", "m")) is omium.OmiumError


def test_every_core_error_code_has_a_class_of_its_own():
    # The codes come from the core's error enum: a code added there without a class here fails.
    from omium import errors

    assert len(_omium.ERROR_CODES) == len(set(_omium.ERROR_CODES)) >= 35
    for code in _omium.ERROR_CODES:
        cls = errors.BY_CODE.get(code)
        assert cls is not None and cls is not omium.OmiumError, f"no exception class for {code!r}"
        err = errors.from_code(code, "boom")
        assert isinstance(err, cls) and err.code == code and str(err) == "boom"
        assert getattr(omium, cls.__name__) is cls, f"{cls.__name__} is not exported by omium"
