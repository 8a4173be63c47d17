"""Whole-network benchmark: every Conv2d layer of real CNNs through gconv, torch, onnxruntime and openvino.

The layers come from benchmarks/network_layers.json (written by extract_layers.py from torchvision's model
definitions at 224x224), so no torchvision is needed here. For each batch size and thread count, every
distinct layer runs through each implementation round by round (interleaved, after a warm-up, median over
rounds); a network's conv time is the sum over its layers of median time x occurrences. Reported per network:
the times, t(gconv) / t(fastest peer), GFLOP/s and gconv's share of the sgemm ceiling measured in the same run
(NumPy matmul on a square float32 matrix, as bench.py); then the layer classes and the single layers where
gconv is furthest behind, and the per-call overhead of gconv's module path. Implementations:

  gconv     gconv.Conv2d module (weights set once), n_threads
  torch     torch.nn.Conv2d under torch.no_grad(), torch.set_num_threads
  ort       onnxruntime: a one-node ONNX Conv model, intra_op_num_threads, sequential execution
  openvino  the same ONNX model compiled for the CPU: INFERENCE_NUM_THREADS, latency hint, f32 precision

A peer that is not installed is skipped with a note (benchmarks/requirements.txt pins them). Usage:

    python benchmarks/networks.py --quick                      # a few layers per network: a smoke run
    python benchmarks/networks.py --batch 1 8 --threads 1 2 --json benchmarks/results/networks.json
    python benchmarks/networks.py --settings 1:1 8:1 1:2      # (batch, threads) pairs: the README's table
    python benchmarks/networks.py --only "@7x7" --networks resnet50 mobilenet_v3_large   # one layer class
    python benchmarks/networks.py --networks resnet50 mobilenet_v2 --peers torch ort --rounds 9
"""

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import MALLOC_ENV, gemm_ceiling  # noqa: E402  the same allocator setting and sgemm ceiling as bench.py

import gconv  # noqa: E402

LAYERS_JSON = os.path.join(HERE, "network_layers.json")
PEER_NAMES = ("torch", "ort", "openvino")
# a layer's result must match the reference (torch when installed, else gconv) to this relative error
TOLERANCE = 1e-3


# ---- layers ---------------------------------------------------------------------------------


def layer_key(spec):
    """What makes two layers the same work: hyper-parameters and input shape, not their names or counts."""
    return json.dumps({k: v for k, v in spec.items() if k not in ("count", "first", "output")}, sort_keys=True)


def load_layers(path, names, quick, only=None):
    """Distinct layers of the chosen networks, each with {network: occurrences}, in first-seen order."""
    with open(path) as f:
        table = json.load(f)
    unknown = [n for n in names if n not in table["networks"]]
    if unknown:
        raise SystemExit(f"unknown network(s) {unknown}; {path} has {list(table['networks'])}")
    layers = {}
    for name in names:
        net_layers = table["networks"][name]["layers"]
        if quick:  # a few layers spread over the network: first, middle, last
            picks = sorted({0, len(net_layers) // 2, len(net_layers) - 1})
            net_layers = [net_layers[i] for i in picks]
        for spec in net_layers:
            if only and only not in describe(spec) and only not in layer_class(spec):
                continue
            entry = layers.setdefault(layer_key(spec), {"spec": spec, "networks": {}, "names": {}})
            entry["networks"][name] = entry["networks"].get(name, 0) + spec["count"]
            entry["names"].setdefault(name, spec["first"])
    # networks that --only left without a layer have no totals
    titles = {n: table["networks"][n]["title"] for n in names if any(n in e["networks"] for e in layers.values())}
    return list(layers.values()), titles, table


def pads(spec):
    """(top, left, bottom, right) zero padding, with torch's placement for 'same' (the odd extra after)."""
    padding = spec["padding"]
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(spec["dilation"], spec["kernel_size"])]
        return (totals[0] // 2, totals[1] // 2, totals[0] - totals[0] // 2, totals[1] - totals[1] // 2)
    return (padding[0], padding[1], padding[0], padding[1])


def macs(spec, batch):
    c_out, h_out, w_out = spec["output"]
    kh, kw = spec["kernel_size"]
    return batch * c_out * h_out * w_out * (spec["in_channels"] // spec["groups"]) * kh * kw


def describe(spec):
    """Short name of a layer: kernel, channels, groups, input map, stride."""
    kh, kw = spec["kernel_size"]
    c_in, h, w = spec["input"]
    g = spec["groups"]
    if g == c_in and g > 1:
        kind = f"dw {kh}x{kw} {c_in}" + (f"->{spec['out_channels']}" if spec["out_channels"] != c_in else "")
    else:
        kind = f"{kh}x{kw} {c_in}->{spec['out_channels']}" + (f" g{g}" if g > 1 else "")
    s = spec["stride"]
    stride = "" if s == [1, 1] else f" s{s[0]}" if s[0] == s[1] else f" s{s[0]}x{s[1]}"
    d = spec["dilation"]
    dil = "" if d == [1, 1] else f" d{d[0]}"
    return f"{kind} @{h}x{w}{stride}{dil}"


def layer_class(spec):
    """The issue's layer classes: what limits a kernel is the map size and the kind of channel mixing."""
    kh, kw = spec["kernel_size"]
    c_in = spec["in_channels"]
    g = spec["groups"]
    _, h_out, w_out = spec["output"]
    small = max(h_out, w_out) <= 14
    maps = "14x14 and smaller maps" if small else "28x28 and larger maps"
    if c_in == 3 and g == 1:
        return "stem (3 input channels)"
    if spec["input"][1:] == [1, 1] and (kh, kw) == (1, 1):
        return "1x1 on a 1x1 map (squeeze-excitation)"
    strided = spec["stride"] != [1, 1]
    if (kh, kw) == (1, 1) and strided or (kh > 1 and spec["stride"] == [kh, kw] and pads(spec) == (0, 0, 0, 0)):
        return "1x1 stride 2, kxk stride-k downsampling"
    if g == c_in and g > 1:
        return f"depthwise, {maps}"
    if g > 1:
        return f"grouped {'1x1' if (kh, kw) == (1, 1) else 'kxk'}, {maps}"
    if (kh, kw) == (1, 1):
        return f"1x1, {maps}"
    return f"dense kxk, {maps}"


# ---- implementations: make(spec, x, w, b, n_threads) -> (call, result) ----------------------------
# call() is what is timed; result() runs once and returns the output as a NumPy array, for the check.


def make_gconv(spec, x, w, b, n_threads):
    m = gconv.Conv2d(
        spec["in_channels"],
        spec["out_channels"],
        spec["kernel_size"],
        spec["stride"],
        spec["padding"] if isinstance(spec["padding"], str) else tuple(spec["padding"]),
        spec["dilation"],
        spec["groups"],
        bias=b is not None,
        padding_mode=spec["padding_mode"],
    )
    m.weight[...] = w
    if b is not None:
        m.bias[...] = b

    def call():
        return m(x, n_threads=n_threads)

    return call, call


def make_torch(spec, x, w, b, n_threads):
    import torch

    torch.set_num_threads(n_threads)
    padding = spec["padding"] if isinstance(spec["padding"], str) else tuple(spec["padding"])
    m = torch.nn.Conv2d(
        spec["in_channels"],
        spec["out_channels"],
        tuple(spec["kernel_size"]),
        tuple(spec["stride"]),
        padding,
        tuple(spec["dilation"]),
        spec["groups"],
        bias=b is not None,
        padding_mode=spec["padding_mode"],
    )
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(w))
        if b is not None:
            m.bias.copy_(torch.from_numpy(b))
    m.eval()
    xt = torch.from_numpy(x)

    def call():
        with torch.no_grad():
            return m(xt)

    return call, lambda: call().numpy()


def onnx_conv_model(spec, x_shape, w, b):
    """A one-node ONNX Conv model, weights as initializers."""
    from onnx import TensorProto, helper, numpy_helper

    if spec["padding_mode"] != "zeros":
        raise NotImplementedError("ONNX Conv pads with zeros only")
    top, left, bottom, right = pads(spec)
    inputs = ["x", "w"] + (["b"] if b is not None else [])
    node = helper.make_node(
        "Conv",
        inputs,
        ["y"],
        kernel_shape=list(spec["kernel_size"]),
        strides=list(spec["stride"]),
        pads=[top, left, bottom, right],
        dilations=list(spec["dilation"]),
        group=spec["groups"],
    )
    initializers = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if b is not None else [])
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # onnx 1.23 writes IR 14 by default, newer than onnxruntime 1.31 reads; opset 13 needs 7
    return model.SerializeToString()


def make_ort(spec, x, w, b, n_threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_conv_model(spec, x.shape, w, b), options, providers=["CPUExecutionProvider"])
    feed = {"x": x}

    def call():
        return session.run(None, feed)[0]

    return call, call


_OV_CORE = []


def make_openvino(spec, x, w, b, n_threads):
    import openvino as ov

    if not _OV_CORE:
        _OV_CORE.append(ov.Core())
    core = _OV_CORE[0]
    model = core.read_model(io.BytesIO(onnx_conv_model(spec, x.shape, w, b)))
    compiled = core.compile_model(
        model,
        "CPU",
        {"INFERENCE_NUM_THREADS": n_threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
    )
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(x, shared_memory=True))  # no copy of the input per call

    def call():
        return request.infer(share_outputs=True)

    def result():
        call()
        return np.array(request.get_output_tensor().data)

    return call, result


MAKERS = {"gconv": make_gconv, "torch": make_torch, "ort": make_ort, "openvino": make_openvino}
PEER_MODULES = {"torch": ("torch",), "ort": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}


def available_peers(requested):
    """Peers whose packages import; the others with the reason they are skipped."""
    peers, skipped = [], {}
    for name in requested:
        try:
            for module in PEER_MODULES[name]:
                __import__(module)
            peers.append(name)
        except Exception as error:  # an import can fail in other ways than ImportError (broken wheels)
            skipped[name] = f"{type(error).__name__}: {error}"
    return peers, skipped


# ---- per-call overhead of the module path ------------------------------------------------------


def _per_call_us(fn, number=200, repeat=25):
    # the minimum over many short repeats: a fixed per-call cost is what is asked, and on a shared machine
    # every longer window also holds time slices taken by other processes
    fn()
    return 1e6 * min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def module_overhead(peers):
    """Per-call time of a 1x1 conv on a 1x1x1x1 input (no compute to speak of), module path, one thread.

    Minimum over 25 repeats of 200 calls.
    gconv is timed whole, with its kernel call stubbed out (gconv._select.conv2d a no-op: what is left is
    validation, output allocation and the path to the kernel), and the kernel selection alone
    (gconv._select.choose); the peers' whole calls give the scale.
    """
    from gconv import _select

    spec = {
        "in_channels": 1,
        "out_channels": 1,
        "kernel_size": [1, 1],
        "stride": [1, 1],
        "padding": [0, 0],
        "dilation": [1, 1],
        "groups": 1,
        "bias": True,
        "padding_mode": "zeros",
        "input": [1, 1, 1],
        "output": [1, 1, 1],
    }
    x = np.ones((1, 1, 1, 1), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    b = np.zeros(1, np.float32)
    result = {"layer": "Conv2d(1, 1, 1) on a (1, 1, 1, 1) float32 input, 1 thread"}
    call, _ = make_gconv(spec, x, w, b, 1)
    result["gconv_us"] = _per_call_us(call)
    real = getattr(_select, "conv2d", None)
    if real is not None:
        _select.conv2d = lambda *args, **kwargs: None
        try:
            result["gconv_no_kernel_us"] = _per_call_us(call)
        finally:
            _select.conv2d = real
    if hasattr(_select, "choose"):
        result["gconv_choose_us"] = _per_call_us(
            lambda: _select.choose(x.shape, w.shape, (1, 1, 1, 1), (1, 1), (0, 0), (1, 1), 1, x.dtype.itemsize, True, 1)
        )
    for peer in peers:
        peer_call, _ = MAKERS[peer](spec, x, w, b, 1)
        result[f"{peer}_us"] = _per_call_us(peer_call)
    return result


# ---- the run ---------------------------------------------------------------------------------


def round_times(funcs, rounds, min_time, settle):
    """bench.py's timing, keeping every round: warm-up, then round by round each implementation repeats its
    call until min_time passes (after settle seconds, so the previous one's spinning workers have stopped).

    Returns {name: [seconds per call, one per round]}; the median is the figure, the minimum (the round least
    disturbed by other processes) is kept beside it for a shared machine.
    """
    times = {name: [] for name in funcs}
    for fn in funcs.values():
        fn()
    for _ in range(rounds):
        for name, fn in funcs.items():
            time.sleep(settle)
            reps, start = 0, time.perf_counter()
            while True:
                fn()
                reps += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time:
                    break
            times[name].append(elapsed / reps)
    return times


def _ms(value):
    return f"{value:8.3f}" if value is not None else "       -"


def time_layers(layers, impls, batch, n_threads, rounds, min_time, settle, progress_every=1):
    rows = []
    start = time.perf_counter()
    for i, entry in enumerate(layers):
        spec = entry["spec"]
        rng = np.random.default_rng(i)
        x = rng.standard_normal((batch, *spec["input"])).astype(np.float32)
        fan_in = spec["in_channels"] // spec["groups"] * spec["kernel_size"][0] * spec["kernel_size"][1]
        w = (
            rng.standard_normal((spec["out_channels"], spec["in_channels"] // spec["groups"], *spec["kernel_size"]))
            / np.sqrt(fan_in)
        ).astype(np.float32)
        b = rng.standard_normal(spec["out_channels"]).astype(np.float32) if spec["bias"] else None
        calls, errors, failed = {}, {}, {}
        reference = None
        for impl in impls:
            try:
                call, result = MAKERS[impl](spec, x, w, b, n_threads)
                out = np.asarray(result())
            except Exception as error:  # a peer that cannot run a layer is reported, not fatal
                if impl == "gconv":
                    raise
                failed[impl] = f"{type(error).__name__}: {str(error)[:200]}"
                continue
            if reference is None or impl == "torch":
                reference = out
            calls[impl] = (call, out)
        scale = max(1e-30, float(np.abs(reference).max()))
        for impl, (_call, out) in calls.items():
            errors[impl] = float(np.abs(out - reference).max()) / scale
            if errors[impl] > TOLERANCE:
                raise AssertionError(
                    f"{impl} differs from the reference on {describe(spec)}: relative error {errors[impl]}"
                )
        times = round_times({impl: call for impl, (call, _) in calls.items()}, rounds, min_time, settle)
        med = {impl: statistics.median(t) for impl, t in times.items()}
        flop = 2.0 * macs(spec, batch)
        row = {
            "layer": describe(spec),
            "class": layer_class(spec),
            "spec": spec,
            "networks": entry["networks"],
            "names": entry["names"],
            "gflop": flop / 1e9,
            "max_rel_err": errors,
        }
        if failed:
            row["failed"] = failed
        for impl, t in times.items():
            row[f"{impl}_ms"] = statistics.median(t) * 1e3
            row[f"{impl}_min_ms"] = min(t) * 1e3
        peer_times = {impl: t for impl, t in med.items() if impl != "gconv"}
        if peer_times:
            best = min(peer_times, key=peer_times.get)
            row["best_peer"] = best
            row["ratio_vs_best_peer"] = med["gconv"] / peer_times[best]
            row["ratio_vs_best_peer_min"] = min(times["gconv"]) / min(min(times[p]) for p in peer_times)
        rows.append(row)
        if (i + 1) % progress_every == 0 or i + 1 == len(layers):
            cells = "  ".join(f"{impl} {_ms(row.get(f'{impl}_ms'))}" for impl in impls)
            ratio = f"{row['ratio_vs_best_peer']:5.2f}" if "ratio_vs_best_peer" in row else "    -"
            print(
                f"  [{i + 1:3d}/{len(layers)}] {row['layer']:<32} {cells}  g/best {ratio}  "
                f"({time.perf_counter() - start:4.0f} s)",
                flush=True,
            )
    return rows


def network_totals(rows, titles, impls, batch, ceiling):
    totals = {}
    for name, title in titles.items():
        used = [(r, r["networks"][name]) for r in rows if name in r["networks"]]
        flop = sum(r["gflop"] * n for r, n in used)
        net = {"title": title, "distinct_layers": len(used), "conv_layers": sum(n for _, n in used), "gflop": flop}
        for impl in impls:
            if all(f"{impl}_ms" in r for r, _ in used):
                ms = sum(r[f"{impl}_ms"] * n for r, n in used)
                net[f"{impl}_ms"] = ms
                net[f"{impl}_min_ms"] = sum(r[f"{impl}_min_ms"] * n for r, n in used)
                net[f"{impl}_gflops"] = flop / ms * 1e3
                if ceiling:
                    net[f"{impl}_pct_of_ceiling"] = 100.0 * net[f"{impl}_gflops"] / ceiling
        peers = {impl: net[f"{impl}_ms"] for impl in impls if impl != "gconv" and f"{impl}_ms" in net}
        if peers:
            best = min(peers, key=peers.get)
            net["best_peer"] = best
            net["ratio_vs_best_peer"] = net["gconv_ms"] / peers[best]
            # the best peer chosen layer by layer: a stricter bar than any single peer
            best_per_layer = sum(min(r[f"{p}_ms"] for p in peers) * n for r, n in used)
            net["ratio_vs_best_per_layer"] = net["gconv_ms"] / best_per_layer
            # the same from each layer's least-disturbed round
            net["ratio_vs_best_peer_min"] = net["gconv_min_ms"] / min(net[f"{p}_min_ms"] for p in peers)
        totals[name] = net
    return totals


def class_totals(rows):
    """gconv ms / fastest-peer ms summed over the distinct layers of each class (each layer counted once)."""
    classes = {}
    for r in rows:
        if "best_peer" not in r:
            continue
        c = classes.setdefault(r["class"], {"layers": 0, "gconv_ms": 0.0, "best_peer_ms": 0.0, "worst_ratio": 0.0})
        c["layers"] += 1
        c["gconv_ms"] += r["gconv_ms"]
        c["best_peer_ms"] += r[f"{r['best_peer']}_ms"]
        c["worst_ratio"] = max(c["worst_ratio"], r["ratio_vs_best_peer"])
    for c in classes.values():
        c["ratio"] = c["gconv_ms"] / c["best_peer_ms"]
    return dict(sorted(classes.items(), key=lambda kv: -kv[1]["ratio"]))


def max_errors(rows):
    """Largest relative difference from the reference (torch when installed) over the layers, per implementation."""
    worst = {}
    for r in rows:
        for impl, e in r["max_rel_err"].items():
            worst[impl] = max(worst.get(impl, 0.0), e)
    return worst


def time_lost(rows, n):
    """The layers that cost gconv the most time over the fastest peer, occurrences in all networks counted."""
    lost = []
    for r in rows:
        if "best_peer" in r:
            excess = (r["gconv_ms"] - r[f"{r['best_peer']}_ms"]) * sum(r["networks"].values())
            lost.append((excess, r))
    lost.sort(key=lambda item: -item[0])
    return [
        dict(
            layer=r["layer"],
            excess_ms=excess,
            ratio_vs_best_peer=r["ratio_vs_best_peer"],
            best_peer=r["best_peer"],
            networks=r["networks"],
        )
        for excess, r in lost[:n]
    ]


def print_setting(totals, classes, worst, lost, impls, ceiling):
    print(
        f"  {'network':<16} {'layers':>6} {'GFLOP':>6} "
        + " ".join(f"{impl + ' ms':>11}" for impl in impls)
        + f" {'g/best':>7} {'g/best/layer':>12} {'g/best min':>10} {'gconv GF/s':>10} {'best GF/s':>9} {'%ceil':>5}"
    )
    for net in totals.values():
        cells = " ".join(f"{net[f'{impl}_ms']:11.2f}" if f"{impl}_ms" in net else f"{'-':>11}" for impl in impls)
        best = net.get("best_peer")
        print(
            f"  {net['title']:<16} {net['conv_layers']:6d} {net['gflop']:6.2f} {cells} "
            f"{net.get('ratio_vs_best_peer', float('nan')):7.2f} "
            f"{net.get('ratio_vs_best_per_layer', float('nan')):12.2f} "
            f"{net.get('ratio_vs_best_peer_min', float('nan')):10.2f} "
            f"{net['gconv_gflops']:10.1f} {net[f'{best}_gflops'] if best else float('nan'):9.1f} "
            f"{net.get('gconv_pct_of_ceiling', float('nan')):5.0f}"
        )
    if classes:
        print(
            f"  {'layer class (distinct layers)':<46} {'n':>3} {'gconv ms':>9} {'best ms':>9} {'ratio':>6} {'worst':>6}"
        )
        for name, c in classes.items():
            print(
                f"  {name:<46} {c['layers']:3d} {c['gconv_ms']:9.3f} {c['best_peer_ms']:9.3f} {c['ratio']:6.2f} "
                f"{c['worst_ratio']:6.2f}"
            )
    if worst:
        print("  worst layers by t(gconv) / t(fastest peer):")
        for r in worst:
            nets = ", ".join(f"{n} x{c}" for n, c in r["networks"].items())
            print(
                f"    {r['ratio_vs_best_peer']:6.2f}  {r['layer']:<32} gconv {r['gconv_ms']:.3f} ms, "
                f"{r['best_peer']} {r[r['best_peer'] + '_ms']:.3f} ms  ({nets})"
            )
    if lost:
        print("  most time lost to the fastest peer, (gconv - best) x occurrences in all networks:")
        for r in lost:
            nets = ", ".join(f"{n} x{c}" for n, c in r["networks"].items())
            print(f"    {r['excess_ms']:8.3f} ms  {r['layer']:<32} ratio {r['ratio_vs_best_peer']:5.2f}  ({nets})")


def dumps_results(results):
    """Indented JSON with each layer row on one line: a third of the size, and diffable."""
    rows = {}

    def placeholder(setting):
        key = f"@@layers{len(rows)}@@"
        rows[key] = setting["layers"]
        return dict(setting, layers=key)

    text = json.dumps(dict(results, settings=[placeholder(s) for s in results["settings"]]), indent=1)
    for key, layer_rows in rows.items():
        text = text.replace(json.dumps(key), "[\n" + ",\n".join("    " + json.dumps(r) for r in layer_rows) + "\n   ]")
    return text


def machine_info(note):
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    if note:
        info["note"] = note
    return info


def versions(peers):
    found = {"gconv": gconv.__version__, "gconv_isa": gconv.kernel_isa(), "numpy": np.__version__}
    try:  # the commit measured, when run from a checkout
        found["gconv_commit"] = (
            subprocess.run(
                ["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or "?"
        )
    except (OSError, subprocess.SubprocessError):
        pass
    for peer in peers:
        for module in PEER_MODULES[peer]:
            found[module] = getattr(sys.modules.get(module), "__version__", "?")
    return found


def main(argv=None):
    if sys.platform.startswith("linux") and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.environ.update(MALLOC_ENV)  # as bench.py: the same allocator behaviour for every implementation
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default=LAYERS_JSON, help="layer table (default: %(default)s)")
    parser.add_argument(
        "--networks", nargs="+", help="networks by torchvision builder name (default: all in the table)"
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--settings",
        nargs="+",
        metavar="BATCH:THREADS",
        help="exact (batch, threads) pairs instead of every --batch x --threads, e.g. 1:1 8:1 1:2",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds per layer (default 7, --quick 2)")
    parser.add_argument(
        "--min-time", type=float, help="seconds of repeated calls per round (default 0.02, --quick 0.005)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.05,
        help="seconds to wait before each timing with more than one thread, so the previous "
        "implementation's spinning workers stop (default %(default)s)",
    )
    parser.add_argument("--peers", nargs="+", default=list(PEER_NAMES), choices=PEER_NAMES)
    parser.add_argument("--quick", action="store_true", help="three layers per network, two rounds: a smoke run")
    parser.add_argument(
        "--only",
        help="only the layers whose name (e.g. 'dw 3x3', '@7x7') or class (e.g. "
        "'1x1 on a 1x1 map') contains this text; network totals then cover those layers only",
    )
    parser.add_argument(
        "--worst", type=int, default=10, help="how many of the worst layers (by ratio, and by time lost) to list"
    )
    parser.add_argument("--note", help="a note on the machine or the run, kept in the JSON")
    parser.add_argument("--json", help="write the results here (e.g. benchmarks/results/networks-<machine>.json)")
    args = parser.parse_args(argv)

    if args.settings:
        try:
            pairs = [tuple(int(v) for v in item.split(":")) for item in args.settings]
        except ValueError:
            parser.error(f"--settings takes BATCH:THREADS pairs, got {args.settings}")
    else:
        pairs = [(batch, n_threads) for batch in args.batch for n_threads in args.threads]
    rounds = args.rounds or (2 if args.quick else 7)
    min_time = args.min_time if args.min_time is not None else (0.005 if args.quick else 0.02)
    with open(args.layers) as f:
        names = args.networks or list(json.load(f)["networks"])
    layers, titles, table = load_layers(args.layers, names, args.quick, args.only)
    peers, skipped = available_peers(args.peers)
    impls = ["gconv"] + peers
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None

    print(
        f"gconv {gconv.__version__}  kernels={gconv.kernel_isa()}  openmp={gconv.openmp_enabled()}  "
        f"cpu={machine_info(None)['cpu']}  cores={os.cpu_count()}  numpy {np.__version__}"
    )
    quick = " (quick: 3 per network)" if args.quick else ""
    print(
        f"{len(names)} networks, {len(layers)} distinct Conv2d layers{quick}; "
        f"layers from {os.path.relpath(args.layers)} (torchvision {table['torchvision']}, {table['image_size']}px)"
    )
    print(f"implementations: {', '.join(f'{i} {v}' for i, v in versions(peers).items())}")
    for peer, why in skipped.items():
        print(f"note: peer {peer} skipped ({why})")
    print(
        f"median of {rounds} interleaved rounds of >= {min_time * 1e3:.0f} ms; ratios are t(gconv) / t(other), "
        "< 1 means gconv is faster",
        flush=True,
    )

    overhead = module_overhead(peers)
    parts = [f"gconv {overhead['gconv_us']:.1f} us"]
    if "gconv_no_kernel_us" in overhead:
        parts.append(f"without the kernel call (gconv._select.conv2d stubbed) {overhead['gconv_no_kernel_us']:.1f} us")
    if "gconv_choose_us" in overhead:
        parts.append(f"kernel selection alone (gconv._select.choose) {overhead['gconv_choose_us']:.1f} us")
    parts += [f"{p} {overhead[f'{p}_us']:.1f} us" for p in peers]
    print(f"per-call overhead, {overhead['layer']}: " + "; ".join(parts), flush=True)

    settings = []
    run_start = time.perf_counter()

    def ceiling_now(n_threads):
        limits = threadpool_limits(n_threads, user_api="blas") if threadpool_limits else contextlib.nullcontext()
        with limits:
            return gemm_ceiling(np.float32, n_threads)

    for batch, n_threads in pairs:
        ceilings = [ceiling_now(n_threads)]
        print(
            f"\nbatch {batch}, {n_threads} thread{'s' if n_threads > 1 else ''}: sgemm ceiling "
            f"(NumPy matmul, 1536x1536 float32) {ceilings[0]:.0f} GFLOP/s",
            flush=True,
        )
        rows = time_layers(layers, impls, batch, n_threads, rounds, min_time, args.settle if n_threads > 1 else 0.0)
        # measured again after the layers; the larger counts (other processes only ever lower it)
        ceilings.append(ceiling_now(n_threads))
        ceiling = max(ceilings)
        print(
            f"  sgemm ceiling before / after the layers: {ceilings[0]:.0f} / {ceilings[1]:.0f} GFLOP/s; "
            f"% of ceiling below is of {ceiling:.0f}"
        )
        totals = network_totals(rows, titles, impls, batch, ceiling)
        classes = class_totals(rows)
        worst = sorted((r for r in rows if "ratio_vs_best_peer" in r), key=lambda r: -r["ratio_vs_best_peer"])
        worst = worst[: args.worst]
        lost = time_lost(rows, args.worst)
        print_setting(totals, classes, worst, lost, impls, ceiling)
        errors = max_errors(rows)
        print(
            "  max relative error vs the reference (torch if installed): "
            + ", ".join(f"{impl} {e:.1e}" for impl, e in errors.items()),
            flush=True,
        )
        settings.append(
            {
                "batch": batch,
                "threads": n_threads,
                "gemm_ceiling_gflops": ceiling,
                "gemm_ceiling_before_after_gflops": ceilings,
                "max_rel_err": errors,
                "networks": totals,
                "classes": classes,
                "worst_layers": [
                    {k: r[k] for k in ("layer", "ratio_vs_best_peer", "best_peer", "networks")} for r in worst
                ],
                "most_time_lost": lost,
                "layers": rows,
            }
        )

    if peers:
        print("\nt(gconv) / t(fastest peer) per network, conv layers summed (markdown, as in the README):\n")
        print("| setting | " + " | ".join(titles.values()) + " |")
        print("|---" * (len(titles) + 1) + "|")
        for key, label in (("ratio_vs_best_peer", ""), ("ratio_vs_best_peer_min", ", min")):
            for s in settings:
                cells = [f"{s['networks'][name].get(key, float('nan')):.2f}" for name in titles]
                print(
                    f"| batch {s['batch']}, {s['threads']} thread{'s' if s['threads'] > 1 else ''}{label} | "
                    + " | ".join(cells)
                    + " |"
                )
    print(f"total {time.perf_counter() - run_start:.0f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            f.write(
                dumps_results(
                    {
                        "argv": sys.argv,
                        "machine": machine_info(args.note),
                        "versions": versions(peers),
                        "skipped_peers": skipped,
                        "quick": args.quick,
                        "rounds": rounds,
                        "min_time_s": min_time,
                        "layer_table": {"torchvision": table["torchvision"], "image_size": table["image_size"]},
                        "overhead": overhead,
                        "settings": settings,
                    }
                )
                + "\n"
            )
        print("wrote", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
