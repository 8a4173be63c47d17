"""Writes benchmarks/network_layers.json: every Conv2d of real torchvision networks, so networks.py runs without them.

For each network (torchvision's model definition, random weights, nothing downloaded) one batch-1 forward pass
at 224x224 with a forward hook on every torch.nn.Conv2d records the layer's input shape and hyper-parameters;
layers with the same shape and hyper-parameters are merged into one row with the number of times they occur,
in the order of their first call. Usage (needs torch==2.13.0, torchvision==0.28.0 and pillow; see
benchmarks/requirements.txt):

    python benchmarks/extract_layers.py                       # the default networks -> benchmarks/network_layers.json
    python benchmarks/extract_layers.py --networks resnet18 googlenet --out /tmp/layers.json
"""

import argparse
import contextlib
import json
import os
import sys

# torchvision builder name -> name in tables
NETWORKS = {
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_large": "MobileNetV3-L",
    "shufflenet_v2_x1_0": "ShuffleNetV2",
    "efficientnet_b0": "EfficientNet-B0",
    "regnet_y_400mf": "RegNetY-400MF",
    "convnext_tiny": "ConvNeXt-T",
    "resnet50": "ResNet-50",
    "resnext50_32x4d": "ResNeXt-50",
    "mnasnet1_0": "MNASNet-1.0",
}

IMAGE_SIZE = 224


@contextlib.contextmanager
def _tolerant_register_fake():
    """Let `import torchvision` succeed against the CPU torch wheel.

    torchvision's wheel registers fake (meta) kernels for its compiled ops (nms, roi_align, ...) at import;
    when its compiled library does not load against this torch, the ops are missing and registration raises
    "operator torchvision::nms does not exist". The model definitions use none of those ops, so for the
    duration of the import a registration that fails that way is skipped.
    """
    import torch.library

    original = torch.library.register_fake

    def missing_op(error):
        return isinstance(error, RuntimeError) and "does not exist" in str(error)

    def tolerant(*args, **kwargs):
        try:
            decorator = original(*args, **kwargs)
        except Exception as error:
            if not missing_op(error):
                raise
            return lambda fn: fn
        if not callable(decorator):
            return decorator

        def register(fn):
            try:
                return decorator(fn)
            except Exception as error:
                if not missing_op(error):
                    raise
                return fn

        return register

    torch.library.register_fake = tolerant
    try:
        yield
    finally:
        torch.library.register_fake = original


def import_torchvision():
    with _tolerant_register_fake():
        import torchvision
    return torchvision


def _pair(value):
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


def conv_layers(model, image_size=IMAGE_SIZE):
    """Distinct Conv2d calls of one batch-1 forward pass, with how many times each occurs."""
    import torch

    rows = {}

    def hook(module, inputs, output):
        x = inputs[0]
        padding = module.padding if isinstance(module.padding, str) else _pair(module.padding)
        row = {
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "kernel_size": _pair(module.kernel_size),
            "stride": _pair(module.stride),
            "padding": padding,
            "dilation": _pair(module.dilation),
            "groups": module.groups,
            "bias": module.bias is not None,
            "padding_mode": module.padding_mode,
            "input": list(x.shape[1:]),  # (C, H, W): the benchmark chooses the batch
            "output": list(output.shape[1:]),
        }
        key = json.dumps(row, sort_keys=True)
        if key in rows:
            rows[key]["count"] += 1
        else:
            rows[key] = dict(row, count=1, first=names[module])

    names = {m: name for name, m in model.named_modules()}
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in handles:
            h.remove()
    return list(rows.values())


def macs(row):
    """Multiply-adds of one occurrence at batch 1."""
    c_out, h_out, w_out = row["output"]
    kh, kw = row["kernel_size"]
    return c_out * h_out * w_out * (row["in_channels"] // row["groups"]) * kh * kw


def _dumps(table):
    """JSON with one layer per line: readable, and a changed layer is a one-line diff."""
    text = json.dumps({k: v for k, v in table.items() if k != "networks"}, indent=1)[:-2] + ',\n "networks": {'
    nets = []
    for name, net in table["networks"].items():
        head = json.dumps({k: v for k, v in net.items() if k != "layers"})[:-1]
        layers = ",\n".join("   " + json.dumps(row) for row in net["layers"])
        nets.append(f'\n  {json.dumps(name)}: {head}, "layers": [\n{layers}\n  ]}}')
    return text + ",".join(nets) + "\n }\n}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--networks", nargs="+", default=list(NETWORKS), help="torchvision builder names (default: %(default)s)"
    )
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "network_layers.json")
    )
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(0)
    torchvision = import_torchvision()
    networks = {}
    for name in args.networks:
        model = getattr(torchvision.models, name)(weights=None).eval()  # random weights: nothing downloaded
        layers = conv_layers(model)
        n_convs = sum(r["count"] for r in layers)
        gmacs = sum(macs(r) * r["count"] for r in layers) / 1e9
        networks[name] = {
            "title": NETWORKS.get(name, name),
            "conv_layers": n_convs,
            "conv_gmacs": round(gmacs, 4),
            "layers": layers,
        }
        print(
            f"{name:<20} {n_convs:3d} Conv2d calls, {len(layers):3d} distinct, {gmacs:.3f} GMAC at batch 1", flush=True
        )
    table = {
        "about": "Every torch.nn.Conv2d call of a batch-1 forward pass at 224x224 (random weights), merged by "
        "shape and hyper-parameters with its count; written by benchmarks/extract_layers.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "image_size": IMAGE_SIZE,
        "networks": networks,
    }
    with open(args.out, "w") as f:
        f.write(_dumps(table) + "\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
