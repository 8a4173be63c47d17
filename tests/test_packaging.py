"""What the installed package ships besides code: one version, the PEP 561 marker, a stub that matches the kernels."""

import ast
import importlib
import inspect
import pathlib
import types

import pytest

import gconv
from gconv import _dispatch, _version

PACKAGE = pathlib.Path(gconv.__file__).parent


def test_version_has_one_source():
    assert gconv.__version__ == _version.__version__
    assert all(part.isdigit() for part in _version.__version__.split(".")[:2])


def test_type_information_is_shipped():
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_kernels.pyi").is_file()


def _stub_functions():
    """name -> parameter names, for each function the stub declares; and the names of its variables."""
    tree = ast.parse((PACKAGE / "_kernels.pyi").read_text())
    functions = {node.name: [a.arg for a in node.args.args] for node in tree.body if isinstance(node, ast.FunctionDef)}
    variables = {node.target.id for node in tree.body if isinstance(node, ast.AnnAssign)}
    return functions, variables


@pytest.mark.parametrize("level", _dispatch.available_levels())
def test_kernel_stub_matches_every_compiled_module(level):
    """The stub names every public function of each compiled kernel module, with its parameters in order."""
    module = importlib.import_module(_dispatch._MODULES[level])
    functions, variables = _stub_functions()
    public = {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(public) == set(functions) | variables
    for name, params in functions.items():
        assert [p for p in inspect.signature(public[name]).parameters] == params, name
