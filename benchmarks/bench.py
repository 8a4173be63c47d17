"""Side-by-side benchmark: gconv, a NumPy im2col baseline and every importable peer, in one process.

Peers: torch (float32 and float64), onnxruntime and OpenVINO (the same one-node Conv model, built with the
onnx package; float32 only: onnxruntime has no float64 Conv). For each shape class and thread count the
implementations run round by round (interleaved, after a warm-up); the table gives median times, GFLOP/s,
gconv's share of the GEMM ceiling measured in the same run (NumPy matmul), and the ratios t(gconv) / t(other):
below 1 means gconv is faster. Usage:

    python benchmarks/bench.py                 # full table at 1 thread and all cores
    python benchmarks/bench.py --quick         # batch 1, two rounds: the README's demo
    python benchmarks/bench.py --threads 1 2 4 8 16 --json results.json --png ratios.png
    python benchmarks/bench.py --backward      # plus backward-pass rows against torch's autograd
"""

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import gconv

# name, dtype, (N, C_in, H, W), C_out, kernel, stride, padding, dilation, groups
SHAPES = [
    ("depthwise 3x3 s1", np.float32, (8, 144, 56, 56), 144, 3, 1, 1, 1, 144),
    ("depthwise 3x3 s2", np.float32, (8, 144, 56, 56), 144, 3, 2, 1, 1, 144),
    ("depthwise 5x5 s1", np.float32, (8, 144, 56, 56), 144, 5, 1, 2, 1, 144),
    ("resnext 32x4d 3x3", np.float32, (8, 128, 56, 56), 128, 3, 1, 1, 1, 32),
    ("grouped g4 3x3", np.float32, (8, 64, 28, 28), 64, 3, 1, 1, 1, 4),
    ("grouped g4 1x1", np.float32, (8, 256, 28, 28), 256, 1, 1, 0, 1, 4),
    ("grouped g2 dilated", np.float32, (8, 64, 28, 28), 64, 3, 1, 2, 2, 2),
    ("dense 3x3 b8", np.float32, (8, 64, 56, 56), 64, 3, 1, 1, 1, 1),
    ("dense 3x3 b1", np.float32, (1, 64, 56, 56), 64, 3, 1, 1, 1, 1),
    ("pointwise 1x1", np.float32, (8, 128, 28, 28), 256, 1, 1, 0, 1, 1),
    ("depthwise 3x3 f64", np.float64, (8, 144, 56, 56), 144, 3, 1, 1, 1, 144),
    ("grouped g2 3x3 f64", np.float64, (8, 64, 28, 28), 64, 3, 1, 1, 1, 2),
    ("dense 3x3 f64", np.float64, (8, 64, 28, 28), 64, 3, 1, 1, 1, 1),
    ("tiny latency", np.float32, (1, 6, 8, 8), 6, 3, 1, 1, 1, 3),
]

# glibc returns freed blocks above these sizes to the OS, so every call would page-fault its output in
# again; real pipelines keep their memory. Same setting for every implementation in the run.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}


def numpy_im2col_conv2d(x, w, b, stride, padding, dilation, groups):
    """Baseline: zero-pad, take every window (a view), one matmul per group."""
    n, c_in, _, _ = x.shape
    c_out, icpg, kh, kw = w.shape
    ocpg = c_out // groups
    xp = np.pad(x, [(0, 0), (0, 0), (padding, padding), (padding, padding)])
    eh, ew = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    windows = sliding_window_view(xp, (eh, ew), axis=(2, 3))[:, :, ::stride, ::stride, ::dilation, ::dilation]
    h_out, w_out = windows.shape[2:4]
    out = np.empty((n, c_out, h_out, w_out), x.dtype)
    for g in range(groups):
        cols = windows[:, g * icpg : (g + 1) * icpg].transpose(0, 2, 3, 1, 4, 5).reshape(n * h_out * w_out, -1)
        res = cols @ w[g * ocpg : (g + 1) * ocpg].reshape(ocpg, -1).T
        out[:, g * ocpg : (g + 1) * ocpg] = res.reshape(n, h_out, w_out, ocpg).transpose(0, 3, 1, 2)
    out += b.reshape(1, -1, 1, 1)
    return out


def torch_peer(x, w, b, s, p, d, g, n_threads):
    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:
        return None
    torch.set_num_threads(n_threads)
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

    def call():
        with torch.no_grad():
            return TF.conv2d(xt, wt, bt, s, p, d, g)

    return call


def _onnx_conv_model(x, w, b, s, p, d, g):
    """A one-node ONNX Conv model with the weights as initializers (bytes), or None without the onnx package."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[s, s], pads=[p] * 4, dilations=[d, d], group=g)
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    # an IR version every onnxruntime and OpenVINO of the last years reads (newer onnx writes newer ones)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9).SerializeToString()


def onnxruntime_peer(x, w, b, s, p, d, g, n_threads):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if x.dtype != np.float32:
        return None  # onnxruntime's CPU provider has no float64 Conv
    model = _onnx_conv_model(x, w, b, s, p, d, g)
    if model is None:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": x})[0]


def openvino_peer(x, w, b, s, p, d, g, n_threads):
    try:
        import openvino as ov
    except ImportError:
        return None
    if x.dtype != np.float32:
        return None  # the same f32 model as onnxruntime's (OpenVINO's CPU plugin computes f64 in f32)
    model = _onnx_conv_model(x, w, b, s, p, d, g)
    if model is None:
        return None
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(io.BytesIO(model)),
        "CPU",
        {"INFERENCE_NUM_THREADS": n_threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
    )
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(x, shared_memory=True))  # no copy of the input per call

    def call():
        request.infer(share_outputs=True)
        return request.get_output_tensor().data

    return call


PEERS = {"torch": torch_peer, "ort": onnxruntime_peer, "openvino": openvino_peer}


def _median_times(funcs, rounds, min_time, settle):
    """Interleave the implementations round by round; each round repeats a call until min_time passes.

    settle: seconds to wait before timing each implementation, so the previous one's idle worker threads
    (OpenMP and OpenBLAS spin for a while after a parallel region) have stopped competing for the cores.
    """
    times = {name: [] for name in funcs}
    for fn in funcs.values():
        fn()  # warm-up: page in outputs, start thread pools
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
    return {name: statistics.median(t) for name, t in times.items()}


def gemm_ceiling(dtype, n_threads, size=1536):
    """GFLOP/s of NumPy's matmul (OpenBLAS) on square matrices: the machine's practical ceiling."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    t = _median_times({"gemm": lambda: a @ a}, 3, 0.2, 0.0)["gemm"]
    return 2.0 * size**3 / t / 1e9


def run(shapes, thread_counts, rounds, min_time, batch=None):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None

    ceilings = {}
    for n_threads in thread_counts:
        for dtype in (np.float32, np.float64):
            if threadpool_limits is not None:
                with threadpool_limits(n_threads, user_api="blas"):
                    ceilings[(np.dtype(dtype).name, n_threads)] = gemm_ceiling(dtype, n_threads)
    rows = []
    rng = np.random.default_rng(0)
    for name, dtype, x_shape, c_out, k, s, p, d, g in shapes:
        if batch is not None:
            x_shape = (min(batch, x_shape[0]),) + x_shape[1:]
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal((c_out, x_shape[1] // g, k, k)).astype(dtype)
        b = rng.standard_normal(c_out).astype(dtype)
        want = gconv.conv2d(x, w, b, s, p, d, g)
        flops = 2.0 * want.size * (x_shape[1] // g) * k * k
        for n_threads in thread_counts:
            funcs = {
                "gconv": lambda: gconv.conv2d(x, w, b, s, p, d, g, n_threads=n_threads),
                "numpy": lambda: numpy_im2col_conv2d(x, w, b, s, p, d, g),
            }
            for peer, make in PEERS.items():
                call = make(x, w, b, s, p, d, g, n_threads)
                if call is not None:
                    err = np.abs(np.asarray(call()) - want).max()
                    tolerance = (1e-3 if dtype == np.float32 else 1e-9) * max(1.0, np.abs(want).max())
                    assert err < tolerance, (name, peer, err)
                    funcs[peer] = call
            settle = 0.3 if n_threads > 1 else 0.0
            if threadpool_limits is not None:
                with threadpool_limits(n_threads, user_api="blas"):
                    med = _median_times(funcs, rounds, min_time, settle)
            else:
                med = _median_times(funcs, rounds, min_time, settle)
            row = {
                "shape": name,
                "dtype": np.dtype(dtype).name,
                "input": list(x_shape),
                "c_out": c_out,
                "kernel": k,
                "stride": s,
                "padding": p,
                "dilation": d,
                "groups": g,
                "threads": n_threads,
                "gflop": flops / 1e9,
                "isa": gconv.kernel_isa(),
            }
            for impl, t in med.items():
                row[f"{impl}_ms"] = t * 1e3
                row[f"{impl}_gflops"] = flops / t / 1e9
                if impl != "gconv":
                    row[f"ratio_vs_{impl}"] = med["gconv"] / t
            peers = [t for impl, t in med.items() if impl in PEERS]
            if peers:
                row["ratio_vs_best_peer"] = med["gconv"] / min(peers)
            ceiling = ceilings.get((row["dtype"], n_threads))
            if ceiling:
                row["gemm_ceiling_gflops"] = ceiling
                row["gconv_pct_of_ceiling"] = 100.0 * row["gconv_gflops"] / ceiling
            rows.append(row)
            print(_format_row(row), flush=True)
    return rows, ceilings


BACKWARD_SHAPES = [
    "depthwise 3x3 s1",
    "resnext 32x4d 3x3",
    "grouped g4 3x3",
    "dense 3x3 b1",
    "depthwise 3x3 f64",
    "grouped g2 3x3 f64",
]


def run_backward(shapes, thread_counts, rounds, min_time, batch=None):
    """Backward pass (input, weight and bias gradients) of gconv against torch's autograd, same process."""
    import gconv.grad

    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:
        torch = None
    rows = []
    rng = np.random.default_rng(1)
    for name, dtype, x_shape, c_out, k, s, p, d, g in shapes:
        if name not in BACKWARD_SHAPES:
            continue
        if batch is not None:
            x_shape = (min(batch, x_shape[0]),) + x_shape[1:]
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal((c_out, x_shape[1] // g, k, k)).astype(dtype)
        gy = rng.standard_normal(gconv.conv2d(x, w, None, s, p, d, g).shape).astype(dtype)
        flops = 2 * 2.0 * gy.size * (x_shape[1] // g) * k * k  # input and weight gradients
        for n_threads in thread_counts:

            def gconv_backward():
                return (
                    gconv.grad.conv2d_input(x.shape, w, gy, s, p, d, g, n_threads=n_threads),
                    gconv.grad.conv2d_weight(x, w.shape, gy, s, p, d, g, n_threads=n_threads),
                    gconv.grad.bias(gy),
                )

            funcs = {"gconv": gconv_backward}
            if torch is not None:
                torch.set_num_threads(n_threads)
                xt = torch.from_numpy(x).requires_grad_()
                wt = torch.from_numpy(w).requires_grad_()
                bt = torch.zeros(c_out, dtype=wt.dtype, requires_grad=True)
                yt = TF.conv2d(xt, wt, bt, s, p, d, g)
                gyt = torch.from_numpy(gy)
                funcs["torch"] = lambda: torch.autograd.grad(yt, (xt, wt, bt), gyt, retain_graph=True)
                want = funcs["torch"]()
                got = gconv_backward()
                for a, b in zip(got, want):
                    tol = 1e-2 if dtype == np.float32 else 1e-8
                    assert np.abs(a - b.numpy()).max() < tol * max(1.0, np.abs(b.numpy()).max()), name
            med = _median_times(funcs, rounds, min_time, 0.3 if n_threads > 1 else 0.0)
            row = {
                "shape": "backward " + name,
                "dtype": np.dtype(dtype).name,
                "threads": n_threads,
                "gflop": flops / 1e9,
                "gconv_ms": med["gconv"] * 1e3,
                "gconv_gflops": flops / med["gconv"] / 1e9,
            }
            if "torch" in med:
                row["torch_ms"] = med["torch"] * 1e3
                row["ratio_vs_torch"] = row["ratio_vs_best_peer"] = med["gconv"] / med["torch"]
            rows.append(row)
            print(_format_row(row), flush=True)
    return rows


COLUMNS = [
    ("shape", "{:<19}"),
    ("dtype", "{:<7}"),
    ("threads", "{:>3}"),
    ("gconv_ms", "{:9.3f}"),
    ("gconv_gflops", "{:6.1f}"),
    ("gconv_pct_of_ceiling", "{:5.0f}"),
    ("numpy_ms", "{:9.3f}"),
    ("torch_ms", "{:9.3f}"),
    ("ort_ms", "{:9.3f}"),
    ("openvino_ms", "{:9.3f}"),
    ("ratio_vs_torch", "{:8.2f}"),
    ("ratio_vs_ort", "{:7.2f}"),
    ("ratio_vs_openvino", "{:7.2f}"),
    ("ratio_vs_best_peer", "{:7.2f}"),
    ("ratio_vs_numpy", "{:8.2f}"),
]
HEADER = (
    f"{'shape':<19} {'dtype':<7} {'thr':>3} {'gconv ms':>9} {'GF/s':>6} {'%ceil':>5} {'numpy ms':>9} "
    f"{'torch ms':>9} {'ort ms':>9} {'ov ms':>9} {'g/torch':>8} {'g/ort':>7} {'g/ov':>7} {'g/best':>7} "
    f"{'g/numpy':>8}"
)


def _format_row(row):
    # a peer that is not installed (or has no float64 Conv) leaves its numeric cells as "-"
    return " ".join(fmt.format(row[key]) if key in row else "-".rjust(len(fmt.format(0.0))) for key, fmt in COLUMNS)


def plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart written", file=sys.stderr)
        return
    threads = sorted({r["threads"] for r in rows})
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(threads)
    for i, n in enumerate(threads):
        ratios = [
            next((r.get("ratio_vs_best_peer", np.nan) for r in rows if r["shape"] == s and r["threads"] == n), np.nan)
            for s in shapes
        ]
        ax.bar(np.arange(len(shapes)) + i * width, ratios, width, label=f"{n} thread{'s' if n > 1 else ''}")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(shapes)) + 0.4 - width / 2, shapes, rotation=35, ha="right")
    ax.set_ylabel("t(gconv) / t(fastest peer)   (< 1: gconv faster)")
    ax.set_title(
        "gconv vs the fastest of torch / onnxruntime / OpenVINO (backward: torch), same process "
        f"({gconv.kernel_isa()} kernels)"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    if sys.platform.startswith("linux") and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.environ.update(MALLOC_ENV)
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1, two rounds: a demo in seconds")
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and all cores)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", help="run the shapes whose name contains this text")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--png", help="write a chart of the ratios here (needs matplotlib)")
    parser.add_argument("--backward", action="store_true", help="also time the backward pass against torch's")
    args = parser.parse_args(argv)

    cores = os.cpu_count() or 1
    threads = args.threads or sorted({1, cores})
    rounds = args.rounds or (2 if args.quick else 7)
    shapes = [s for s in SHAPES if args.only is None or args.only in s[0]]
    print(
        f"gconv {gconv.__version__}  kernels={gconv.kernel_isa()}  openmp={gconv.openmp_enabled()}  "
        f"cores={cores}  numpy {np.__version__}  python {platform.python_version()}  {platform.machine()}"
    )
    print("median of", rounds, "interleaved rounds; ratios are t(gconv) / t(other), < 1 means gconv is faster")
    print(HEADER)
    rows, ceilings = run(shapes, threads, rounds, min_time=0.02 if args.quick else 0.1, batch=1 if args.quick else None)
    if args.backward:
        print("backward: input, weight and bias gradients; torch is autograd.grad on the same convolution")
        rows += run_backward(
            shapes, threads, rounds, min_time=0.02 if args.quick else 0.1, batch=1 if args.quick else None
        )
    if ceilings:
        print(
            "GEMM ceiling (NumPy matmul), GFLOP/s:",
            ", ".join(f"{dt} {n} thr {v:.0f}" for (dt, n), v in sorted(ceilings.items())),
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "argv": sys.argv,
                    "cores": cores,
                    "isa": gconv.kernel_isa(),
                    "gemm_ceiling_gflops": {f"{dt}/{n}": v for (dt, n), v in ceilings.items()},
                    "rows": rows,
                },
                f,
                indent=1,
            )
    if args.png:
        plot(rows, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
