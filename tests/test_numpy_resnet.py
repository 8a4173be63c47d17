"""examples/numpy_resnet.py: its NumPy network against torch on a small ResNet of the same structure."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "numpy_resnet.py")


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("numpy_resnet", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _max_pool_loops(x):
    n, c, h, w = x.shape
    h_out, w_out = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
    out = np.empty((n, c, h_out, w_out), x.dtype)
    for i in range(h_out):
        for j in range(w_out):
            rows = slice(max(2 * i - 1, 0), min(2 * i + 2, h))
            cols = slice(max(2 * j - 1, 0), min(2 * j + 2, w))
            out[:, :, i, j] = x[:, :, rows, cols].max(axis=(2, 3))
    return out


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 7, 5), (1, 1, 1, 2), (1, 1, 2, 1)])
def test_max_pool_matches_loops(example, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) - 5  # all negative: padding must lose
    np.testing.assert_array_equal(example.max_pool_3x3_s2(x), _max_pool_loops(x))


def _torch_small_resnet(torch, width, blocks, num_classes):
    """torchvision's ResNet structure and state_dict names, written with torch.nn only (no torchvision)."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(out + identity)

    class SmallResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = width
            for layer, (n_blocks, stride) in enumerate(zip(blocks, (1, 2, 2, 2)), start=1):
                cout = width * 2 ** (layer - 1)
                layers = [BasicBlock(cin if b == 0 else cout, cout, stride if b == 0 else 1) for b in range(n_blocks)]
                setattr(self, f"layer{layer}", nn.Sequential(*layers))
                cin = cout
            self.n_layers = len(blocks)
            self.fc = nn.Linear(cin, num_classes)

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            for layer in range(1, self.n_layers + 1):
                x = getattr(self, f"layer{layer}")(x)
            return self.fc(x.mean(dim=(2, 3)))

    return SmallResNet()


@pytest.mark.parametrize("dtype, image", [("float64", (37, 30)), ("float32", (32, 32)), ("float32", (45, 51))])
def test_numpy_network_matches_torch(example, dtype, image, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    model = _torch_small_resnet(torch, width=8, blocks=(2, 1, 1), num_classes=10)
    example.randomise_batch_norms(model, seed=1)
    model.eval()

    # the example's path: weights through a safetensors file, read back with safetensors.numpy
    path = str(tmp_path / "small.safetensors")
    example.export_weights(model, path)
    tensors = example.load_weights(path)
    assert set(tensors) == set(model.state_dict())
    net = example.NumpyResNet(tensors, dtype)
    assert len(net.blocks) == 4 and sum(shortcut is not None for _, _, shortcut in net.blocks) == 2

    x = np.random.default_rng(2).standard_normal((3, 3, *image)).astype(dtype)
    model = model.to(getattr(torch, dtype))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = net(x)
    assert got.shape == (3, 10) and got.dtype == np.dtype(dtype)
    # float rounding only: the folded batch norms and gconv's summation order
    eps = np.finfo(dtype).eps
    assert np.abs(got - want).max() <= 100 * eps * np.abs(want).max()
    # and the batch norms are really there: the logits of the network without them are far off
    unfolded = dict(tensors)
    for name in [n for n in tensors if n.endswith("running_var")]:
        unfolded[name] = tensors[name] * 1.5
    assert np.abs(example.NumpyResNet(unfolded, dtype)(x) - want).max() > 1e3 * eps * np.abs(want).max()


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="needs torchvision")
def test_example_script_runs_resnet18(tmp_path):
    weights = str(tmp_path / "resnet18.safetensors")
    command = [sys.executable, EXAMPLE, "--batch", "1", "--size", "64", "--repeat", "1", "--weights", weights]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "exported 122 tensors" in first.stdout and "logits match torch's" in first.stdout
    again = subprocess.run(command, capture_output=True, text=True)  # the second run reads the file it wrote
    assert again.returncode == 0 and "exported" not in again.stdout, again.stdout + again.stderr
