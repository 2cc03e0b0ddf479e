"""The hand-written stubs of the native module match the compiled module exactly."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from omium import _omium


def _params(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + ([a.vararg] if a.vararg else []) + a.kwonlyargs + ([a.kwarg] if a.kwarg else [])]
    return [n for n in names if n != "self"]


def test_stub_matches_the_native_module():
    stub_path = Path(__file__).resolve().parents[1] / "python" / "omium" / "_omium.pyi"
    tree = ast.parse(stub_path.read_text())
    public_runtime = {n for n in dir(_omium) if not n.startswith("_")} | {"__version__"}
    stub_names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            stub_names.add(node.name)
            cls = getattr(_omium, node.name)
            methods = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
            runtime = {n for n in vars(cls) if not n.startswith("_")}
            # Annotated names in a class body are its fields (data descriptors at runtime).
            fields = {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
            assert {m for m in methods if not m.startswith("_")} | fields == runtime, node.name
            for f in fields:
                assert inspect.isdatadescriptor(inspect.getattr_static(cls, f)), f"{node.name}.{f}"
            for name, fn in methods.items():
                if name.startswith("__") and name != "__init__":
                    continue  # a slot: its wrapper's signature is (*args, **kwargs)
                if name == "__init__":
                    sig = inspect.signature(cls)
                elif isinstance(inspect.getattr_static(cls, name), property) or "property" in {
                    getattr(d, "id", None) for d in fn.decorator_list
                }:
                    continue
                else:
                    sig = inspect.signature(getattr(cls, name))
                runtime_params = [p for p in sig.parameters if p != "self"]
                assert _params(fn) == runtime_params, f"{node.name}.{name}"
        elif isinstance(node, ast.FunctionDef):
            stub_names.add(node.name)
            assert _params(node) == list(inspect.signature(getattr(_omium, node.name)).parameters), node.name
        elif isinstance(node, ast.AnnAssign):
            stub_names.add(node.target.id)
    assert stub_names == public_runtime
