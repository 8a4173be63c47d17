"""torch's own Conv/ConvTranspose module test configurations, read from torch/testing/_internal/common_nn.py.

The file is parsed, not imported (importing it needs torch's test-only dependencies). Every entry whose
constructor arguments and input size are literals is kept: (name, class name, args, kwargs, input_size).
"""

import ast
import os


def _literal_call_args(call):
    return tuple(ast.literal_eval(a) for a in call.args), {k.arg: ast.literal_eval(k.value) for k in call.keywords}


def conv_module_configs(classes=("Conv1d", "Conv2d")):
    import torch

    path = os.path.join(os.path.dirname(torch.__file__), "testing", "_internal", "common_nn.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    configs = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict"):
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if "input_size" not in kw:
            continue
        try:
            input_size = ast.literal_eval(kw["input_size"])
            if "module_name" in kw and ast.literal_eval(kw["module_name"]) in classes:
                cls = ast.literal_eval(kw["module_name"])
                args, kwargs = ast.literal_eval(kw.get("constructor_args", ast.Constant(()))), {}
                name = cls + ("_" + ast.literal_eval(kw["desc"]) if "desc" in kw else "")
            elif isinstance(kw.get("constructor"), ast.Lambda) and ast.unparse(kw["constructor"].body.func) in tuple(
                "nn." + c for c in classes
            ):
                cls = ast.unparse(kw["constructor"].body.func)[3:]
                args, kwargs = _literal_call_args(kw["constructor"].body)
                name = ast.literal_eval(kw["fullname"]) if "fullname" in kw else cls
            else:
                continue
        except (ValueError, AttributeError, TypeError):
            continue  # not literal: skip
        configs.append((name, cls, args, kwargs, input_size))
    return configs
