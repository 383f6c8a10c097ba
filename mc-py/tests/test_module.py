"""The package itself: stubs that match the native module, docstrings, py.typed, exceptions."""

import ast
import inspect
import pathlib

import pytest

import mc
import mc._mc

PACKAGE = pathlib.Path(mc.__file__).parent


def stub_names(path):
    """{top-level name: set of member names (empty for non-classes)} defined in a .pyi file."""
    tree = ast.parse(path.read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = {
                n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            } | {n.target.id for n in node.body if isinstance(n, ast.AnnAssign)}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = set()
        elif isinstance(node, ast.AnnAssign):
            names[node.target.id] = set()
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names[target.id] = set()
    return names


def public(obj):
    return [n for n in dir(obj) if not n.startswith("_")]


def runtime_modules():
    """(module, stub file) pairs: the native module and each Python submodule."""
    yield mc._mc, PACKAGE / "_mc.pyi"
    yield mc.pki, PACKAGE / "pki.pyi"
    if hasattr(mc, "render"):
        yield mc.render, PACKAGE / "render.pyi"


@pytest.mark.parametrize("module,stub", list(runtime_modules()), ids=lambda x: getattr(x, "__name__", str(x)))
def test_stubs_cover_every_public_name_and_member(module, stub):
    stubs = stub_names(stub)
    for name in public(module):
        value = getattr(module, name)
        if inspect.ismodule(value):
            continue
        assert name in stubs, f"{stub.name} lacks {name}"
        if inspect.isclass(value) and not issubclass(value, BaseException):
            for member in public(value):
                assert member in stubs[name], f"{stub.name}: {name} lacks {member}"


@pytest.mark.parametrize("module", [mc._mc, mc.pki, mc.render], ids=lambda m: m.__name__)
def test_every_function_class_and_method_has_a_docstring(module):
    for name in public(module):
        value = getattr(module, name)
        if inspect.isclass(value) or callable(value):
            assert value.__doc__ and value.__doc__.strip(), f"{name} has no docstring"
        if inspect.isclass(value):
            for member in public(value):
                if member not in vars(value):
                    continue  # inherited (e.g. BaseException.args)
                attr = vars(value)[member]
                if callable(attr) or type(attr).__name__ in ("getset_descriptor", "staticmethod", "property"):
                    assert attr.__doc__ and attr.__doc__.strip(), f"{name}.{member} has no docstring"


def test_package_is_typed():
    assert (PACKAGE / "py.typed").exists()


def test_exception_hierarchy():
    for cls in (mc.PemError, mc.ConfigError, mc.PkiError, mc.IdentityError, mc.LinkError,
                mc.SelectorError, mc.MirrorError, mc.TransportError, mc.RenderError):
        assert issubclass(cls, mc.Error)
        assert cls.__module__ == "mc"
        assert cls.__doc__
    assert issubclass(mc.Error, Exception)


def test_classes_live_in_mc():
    assert mc.TrustBundle.__module__ == "mc"
    assert mc.pki.CertifiedKey.__module__ == "mc.pki"


def stub_functions(path):
    """{qualified name: ast function node} of a .pyi file (first overload wins)."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            out.setdefault(node.name, node)
        elif isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef):
                    name = "__new__" if member.name == "__init__" else member.name
                    out.setdefault(f"{node.name}.{name}", member)
    return out


def stub_params(node):
    """(positional names, keyword-only names, has **kwargs) of a stub, without self."""
    positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg != "self"]
    return positional, [a.arg for a in node.args.kwonlyargs], node.args.kwarg is not None


def runtime_params(obj):
    """The same triple from the native signature, or None when it has none."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    kinds = inspect.Parameter
    positional = [p.name for p in sig.parameters.values()
                  if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD) and p.name != "self"]
    keyword = [p.name for p in sig.parameters.values() if p.kind == kinds.KEYWORD_ONLY]
    return positional, keyword, any(p.kind == kinds.VAR_KEYWORD for p in sig.parameters.values())


@pytest.mark.parametrize("module,stub", list(runtime_modules()), ids=lambda x: getattr(x, "__name__", str(x)))
def test_stub_signatures_match_the_native_ones(module, stub):
    stubs = stub_functions(stub)
    checked = 0
    for name in public(module):
        value = getattr(module, name)
        candidates = []
        if inspect.isbuiltin(value):
            candidates.append((name, value))
        elif inspect.isclass(value) and not issubclass(value, BaseException):
            if value.__text_signature__:
                candidates.append((f"{name}.__new__", value))
            candidates += [(f"{name}.{m}", getattr(value, m)) for m in vars(value)
                           if not m.startswith("_") and callable(getattr(value, m))]
        for qualified, obj in candidates:
            runtime = runtime_params(obj)
            if runtime is None or qualified not in stubs:
                continue
            positional, keyword, kwargs = stub_params(stubs[qualified])
            assert (positional, keyword, kwargs) == runtime, qualified
            checked += 1
    assert checked >= 5
