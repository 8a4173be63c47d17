"""ResNet-18 end to end in NumPy, gconv for every convolution, checked against torch's logits.

Takes torchvision's ResNet-18 (random weights unless --checkpoint names a state_dict saved with torch.save:
nothing is downloaded), exports its weights once to a safetensors file, then runs the whole network from that
file in NumPy: batch norm folded into the convolutions (gconv.fuse_conv_bn_eval), ReLU, max pool, global
average pool and the linear head in a few lines of NumPy, every convolution a gconv.Conv2d. Prints the largest
logit difference from torch and both forward times (medians).

Needs torch and torchvision for the model and the check (the NumPy network itself needs only numpy, gconv and
safetensors). With the CPU build of torch 2.13.0:
    pip install "torch==2.13.0" safetensors pillow && pip install "torchvision==0.28.0" --no-deps
Usage: python examples/numpy_resnet.py [--batch 4] [--size 224] [--weights resnet18.safetensors]
                                       [--checkpoint resnet18.pth] [--dtype float32] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

import gconv

Array = npt.NDArray[np.floating[Any]]

LAYER_STRIDES = (1, 2, 2, 2)  # torchvision's ResNet: layer1 keeps the resolution, each later layer halves it


# ---- the network in NumPy ---------------------------------------------------------------------------------


def relu(x: Array) -> Array:
    return np.maximum(x, 0, out=x)


def max_pool_3x3_s2(x: Array) -> Array:
    """torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1): the largest of 9 strided views."""
    n, c, h, w = x.shape
    h_out, w_out = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    out = np.full((n, c, h_out, w_out), -np.inf, dtype=x.dtype)
    for i in range(3):
        for j in range(3):
            np.maximum(out, padded[:, :, i : i + 2 * h_out : 2, j : j + 2 * w_out : 2], out=out)
    return out


def conv_bn(tensors: Mapping[str, Array], conv: str, bn: str, stride: int, dtype: npt.DTypeLike) -> gconv.Conv2d:
    """The gconv.Conv2d for tensors[conv + '.weight'] with the batch norm tensors[bn + '.*'] folded in."""
    weight = tensors[f"{conv}.weight"]
    out_channels, in_channels, kh, kw = weight.shape
    module = gconv.Conv2d(in_channels, out_channels, (kh, kw), stride, (kh // 2, kw // 2), bias=False, dtype=dtype)
    module.load_state_dict({"weight": weight})
    return gconv.fuse_conv_bn_eval(
        module,
        tensors[f"{bn}.running_mean"],
        tensors[f"{bn}.running_var"],
        1e-5,  # torch.nn.BatchNorm2d's default eps, which torchvision's ResNet uses
        tensors[f"{bn}.weight"],
        tensors[f"{bn}.bias"],
    )


class NumpyResNet:
    """A torchvision-style ResNet of BasicBlocks (ResNet-18, -34) from its state_dict, in NumPy and gconv."""

    def __init__(self, tensors: Mapping[str, Array], dtype: npt.DTypeLike = np.float32) -> None:
        self.dtype = np.dtype(dtype)
        # every parameter in the network's dtype first: the folding then runs in it, as the unfused network would
        tensors = {
            name: np.asarray(array, dtype=self.dtype)
            for name, array in tensors.items()
            if np.asarray(array).dtype.kind == "f"
        }
        self.stem = conv_bn(tensors, "conv1", "bn1", 2, dtype)
        # (conv1, conv2, shortcut or None) per block, layer by layer, as many as the state_dict holds
        self.blocks: list[tuple[gconv.Conv2d, gconv.Conv2d, gconv.Conv2d | None]] = []
        for layer, layer_stride in enumerate(LAYER_STRIDES, start=1):
            block = 0
            while f"layer{layer}.{block}.conv1.weight" in tensors:
                name, stride = f"layer{layer}.{block}", layer_stride if block == 0 else 1
                shortcut = None
                if f"{name}.downsample.0.weight" in tensors:
                    shortcut = conv_bn(tensors, f"{name}.downsample.0", f"{name}.downsample.1", stride, dtype)
                self.blocks.append(
                    (
                        conv_bn(tensors, f"{name}.conv1", f"{name}.bn1", stride, dtype),
                        conv_bn(tensors, f"{name}.conv2", f"{name}.bn2", 1, dtype),
                        shortcut,
                    )
                )
                block += 1
        self.fc_weight = np.ascontiguousarray(tensors["fc.weight"].T, dtype=dtype)
        self.fc_bias = np.asarray(tensors["fc.bias"], dtype=dtype)

    def __call__(self, x: Array) -> Array:
        x = max_pool_3x3_s2(relu(self.stem(x)))
        for conv1, conv2, shortcut in self.blocks:
            identity = x if shortcut is None else shortcut(x)
            out = conv2(relu(conv1(x)))
            out += identity
            x = relu(out)
        features = x.mean(axis=(2, 3))  # adaptive average pool to 1x1, then flatten
        return features @ self.fc_weight + self.fc_bias


# ---- torch's side: the model, its weights, the check ------------------------------------------------------


@contextlib.contextmanager
def tolerant_fake_registration() -> Iterator[None]:
    """Let `import torchvision` pass where its compiled operators cannot load.

    torchvision 0.28.0's wheel is built against CUDA torch; with the CPU torch its _C extension does not load,
    and registering the fake (meta) kernels of the missing operators raises "operator torchvision::nms does
    not exist". Those operators (detection's nms, roi_align, ...) are not used here; the models are plain
    torch.nn. For the import only, a registration of an operator that does not exist is skipped.
    """
    import torch

    original = torch.library.register_fake

    def register_fake(op: Any, func: Callable[..., Any] | None = None, /, *args: Any, **kwargs: Any) -> Any:
        def register(fn: Callable[..., Any]) -> Any:
            try:
                return original(op, fn, *args, **kwargs)
            except RuntimeError as error:
                if "does not exist" not in str(error):
                    raise
                return fn

        return register if func is None else register(func)

    torch.library.register_fake = register_fake  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.library.register_fake = original


def randomise_batch_norms(model: Any, seed: int) -> None:
    """Running statistics and affine parameters away from 0 and 1, so that folding them is really tested."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=generator))
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))


def torch_resnet18(checkpoint: str | None, seed: int) -> Any:
    import torch

    with tolerant_fake_registration():
        import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    if checkpoint:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    else:
        randomise_batch_norms(model, seed)
    return model.eval()


def export_weights(model: Any, path: str) -> None:
    """The model's state_dict to a safetensors file (torch's side; the NumPy side reads it back)."""
    from safetensors.torch import save_file

    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, path)


def load_weights(path: str) -> dict[str, Array]:
    from safetensors.numpy import load_file

    return load_file(path)


def median_seconds(fns: Sequence[Callable[[], object]], repeat: int) -> list[float]:
    """Median time of each function, the functions run in turn each round: a change of machine load
    (other processes, CPU frequency) then falls on all of them alike."""
    for fn in fns:
        fn()  # warm-up: first-touch allocations, thread start-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, fn_times in zip(fns, times):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return [statistics.median(fn_times) for fn_times in times]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224, help="image height and width")
    parser.add_argument("--weights", help="safetensors file: written from the model when absent, else read")
    parser.add_argument("--checkpoint", help="a torch state_dict for torchvision's resnet18 (else random weights)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each network (the median is shown)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    model = torch_resnet18(args.checkpoint, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.weights or os.path.join(tmp, "resnet18.safetensors")
        if not os.path.exists(path):
            export_weights(model, path)
            print(f"exported {len(model.state_dict())} tensors to {args.weights or 'a temporary safetensors file'}")
        tensors = load_weights(path)
    model.load_state_dict({name: torch.from_numpy(array) for name, array in tensors.items()})  # the same weights
    net = NumpyResNet(tensors, args.dtype)

    x = np.random.default_rng(args.seed).standard_normal((args.batch, 3, args.size, args.size)).astype(args.dtype)
    torch_model = model.to(getattr(torch, args.dtype))
    x_torch = torch.from_numpy(x)
    with torch.inference_mode():
        want = torch_model(x_torch).numpy()
    got = net(x)

    scale = float(np.abs(want).max())
    diff = float(np.abs(got - want).max())
    eps = float(np.finfo(args.dtype).eps)
    print(
        f"ResNet-18, input {x.shape} {args.dtype}, logits {got.shape}; torch {torch.__version__}, "
        f"gconv {gconv.__version__} ({gconv.kernel_isa()}); threads: gconv {gconv.get_num_threads()}, "
        f"torch {torch.get_num_threads()}"
    )
    print(
        f"max |logit difference| = {diff:.3g} (largest |logit| {scale:.3g}: {diff / scale / eps:.1f} {args.dtype} "
        f"epsilons of it); same top-1 class for {int((got.argmax(1) == want.argmax(1)).sum())}/{args.batch}"
    )

    def run_torch() -> object:
        with torch.inference_mode():
            return torch_model(x_torch)

    torch_s, numpy_s = median_seconds([run_torch, lambda: net(x)], args.repeat)
    print(
        f"forward, median of {args.repeat} alternate runs: torch {torch_s * 1e3:.1f} ms, "
        f"NumPy + gconv {numpy_s * 1e3:.1f} ms ({numpy_s / torch_s:.2f}x torch's time)"
    )
    # float rounding: the folded batch norm and other summation orders, through 18 layers (measured: a few eps)
    ok = diff <= 100 * eps * scale
    print("logits match torch's to float rounding" if ok else "MISMATCH: logits differ beyond float rounding")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
