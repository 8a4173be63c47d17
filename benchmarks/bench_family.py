"""The rest of the family side by side: Conv3d and ConvTranspose2d against torch, onnxruntime and openvino.

Same method as benchmarks/bench.py (interleaved rounds, medians, GFLOP/s, the GEMM ceiling of the same run):
each implementation runs the same float32 layer at the same thread count; onnxruntime and openvino run a
one-node ONNX model (Conv or ConvTranspose). Ratios are t(gconv) / t(other): below 1, gconv is faster. Usage:

    python benchmarks/bench_family.py [--threads 1 2] [--rounds 5] [--json out.json]
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import _median_times, gemm_ceiling  # noqa: E402

import gconv  # noqa: E402

# name, transposed, input shape, out_channels, kernel, stride, padding, groups
LAYERS = [
    ("conv3d depthwise 3x3x3 (video)", False, (1, 96, 16, 28, 28), 96, (3, 3, 3), 1, 1, 96),
    ("conv3d dense 3x3x3", False, (1, 64, 16, 28, 28), 64, (3, 3, 3), 1, 1, 1),
    ("convT2d 4x4 s2 decoder", True, (8, 128, 32, 32), 64, (4, 4), 2, 1, 1),
    ("convT2d depthwise 4x4 s2", True, (8, 128, 32, 32), 128, (4, 4), 2, 1, 128),
]


def _weight_shape(transposed, c_in, c_out, kernel, groups):
    return (c_in, c_out // groups, *kernel) if transposed else (c_out, c_in // groups, *kernel)


def _onnx_model(transposed, x, w, b, stride, padding, groups):
    from onnx import TensorProto, helper, numpy_helper

    nd = w.ndim - 2
    node = helper.make_node(
        "ConvTranspose" if transposed else "Conv",
        ["x", "w", "b"],
        ["y"],
        strides=[stride] * nd,
        pads=[padding] * (2 * nd),
        group=groups,
    )
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    # an IR version every onnxruntime and openvino of the last years reads (newer onnx writes newer ones)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)


def peers(transposed, x, w, b, stride, padding, groups, n_threads):
    """{name: call} for every importable peer."""
    calls = {}
    try:
        import torch

        torch.set_num_threads(n_threads)
        nd = w.ndim - 2
        fn = getattr(torch.nn.functional, f"conv_transpose{nd}d" if transposed else f"conv{nd}d")
        xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

        def torch_call():
            with torch.no_grad():
                return fn(xt, wt, bt, stride, padding, groups=groups)

        calls["torch"] = torch_call
    except ImportError:
        pass
    try:
        model = _onnx_model(transposed, x, w, b, stride, padding, groups)
    except ImportError:
        return calls
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = n_threads, 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        calls["ort"] = lambda: session.run(None, {"x": x})[0]
    except ImportError:
        pass
    try:
        import openvino as ov

        path = os.path.join(tempfile.mkdtemp(), "layer.onnx")
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
        compiled = ov.Core().compile_model(
            path, "CPU", {"INFERENCE_NUM_THREADS": n_threads, "PERFORMANCE_HINT": "LATENCY"}
        )
        request = compiled.create_infer_request()
        calls["openvino"] = lambda: request.infer({0: x})[compiled.output(0)]
    except ImportError:
        pass
    return calls


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.2)
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    print("| layer | thr | gconv ms | GFLOP/s | % GEMM | torch ms | ort ms | openvino ms | g / best peer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n_threads in args.threads:
        ceiling = gemm_ceiling(np.float32, n_threads)
        for name, transposed, x_shape, c_out, kernel, stride, padding, groups in LAYERS:
            x = rng.standard_normal(x_shape).astype(np.float32)
            w = rng.standard_normal(_weight_shape(transposed, x_shape[1], c_out, kernel, groups)).astype(np.float32)
            b = rng.standard_normal(c_out).astype(np.float32)
            nd = len(kernel)
            fn = getattr(gconv, f"conv_transpose{nd}d" if transposed else f"conv{nd}d")
            want = fn(x, w, b, stride, padding, groups=groups)
            calls = {"gconv": lambda: fn(x, w, b, stride, padding, groups=groups, n_threads=n_threads)}
            for peer, call in peers(transposed, x, w, b, stride, padding, groups, n_threads).items():
                got = np.asarray(call())
                assert np.abs(got - want).max() < 1e-3 * max(1.0, np.abs(want).max()), (name, peer)
                calls[peer] = call
            med = _median_times(calls, args.rounds, args.min_time, 0.3 if n_threads > 1 else 0.0)
            # multiply-adds: every output of a convolution, every input of a transposed one, times its taps
            taps = int(np.prod(kernel)) * (x_shape[1] // groups if not transposed else c_out // groups)
            flops = 2.0 * (x.size if transposed else want.size) * taps
            best = min((t for p, t in med.items() if p != "gconv"), default=None)
            row = dict(
                layer=name,
                threads=n_threads,
                gflop=flops / 1e9,
                gemm_ceiling_gflops=ceiling,
                **{f"{p}_ms": t * 1e3 for p, t in med.items()},
                gconv_gflops=flops / med["gconv"] / 1e9,
                ratio_vs_best_peer=med["gconv"] / best if best else None,
            )
            rows.append(row)
            cell = lambda p: f"{med[p] * 1e3:.3g}" if p in med else "-"  # noqa: E731
            print(
                f"| {name} | {n_threads} | {cell('gconv')} | {row['gconv_gflops']:.0f} | "
                f"{100 * row['gconv_gflops'] / ceiling:.0f} | {cell('torch')} | {cell('ort')} | {cell('openvino')} | "
                f"{row['ratio_vs_best_peer']:.2f} |"
                if best
                else "",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
