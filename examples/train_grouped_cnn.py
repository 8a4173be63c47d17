"""Train a tiny grouped CNN with plain NumPy SGD and gconv's forward and backward passes.

Synthetic task: tell horizontal from vertical stripes (random phase, noise) in 12x12 images. Model:
Conv2d(1, 8, 3) -> ReLU -> Conv2d(8, 8, 3, groups=4) -> ReLU -> global average pool -> linear(8, 2).
Usage: python examples/train_grouped_cnn.py [--steps 200]
"""

import argparse

import numpy as np

import gconv


def make_data(n, rng, size=12):
    labels = rng.integers(0, 2, n)
    grid = np.arange(size)
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    rows = np.sin(grid[None, :, None] * 1.3 + phase) * np.ones((1, 1, size))
    cols = np.sin(grid[None, None, :] * 1.3 + phase) * np.ones((1, size, 1))
    images = np.where(labels[:, None, None] == 0, rows, cols) + 0.3 * rng.standard_normal((n, size, size))
    return images[:, None].astype(np.float32), labels


def train(steps, lr=0.3, seed=0):
    rng = np.random.default_rng(seed)
    x, labels = make_data(256, rng)
    conv1 = gconv.Conv2d(1, 8, 3, padding=1, rng=rng)
    conv2 = gconv.Conv2d(8, 8, 3, padding=1, groups=4, rng=rng)
    linear_w = (rng.standard_normal((2, 8)) / np.sqrt(8)).astype(np.float32)
    linear_b = np.zeros(2, np.float32)
    losses = []
    for step in range(steps + 1):
        # forward
        h1 = np.maximum(conv1(x), 0)
        h2 = np.maximum(conv2(h1), 0)
        features = h2.mean(axis=(2, 3))
        logits = features @ linear_w.T + linear_b
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        loss = -np.log(probs[np.arange(len(labels)), labels] + 1e-12).mean()
        losses.append(loss)
        if step % 10 == 0:
            accuracy = (probs.argmax(axis=1) == labels).mean()
            print(f"step {step:4d}  accuracy {accuracy:.2f}  loss {loss:.4f}")
        if step == steps:
            break
        # backward
        d_logits = probs.copy()
        d_logits[np.arange(len(labels)), labels] -= 1
        d_logits /= len(labels)
        d_linear_w, d_linear_b = d_logits.T @ features, d_logits.sum(axis=0)
        d_features = d_logits @ linear_w
        d_h2 = np.broadcast_to(d_features[:, :, None, None] / (h2.shape[2] * h2.shape[3]), h2.shape) * (h2 > 0)
        d_h1 = conv2.backward(d_h2.astype(np.float32)) * (h1 > 0)
        conv1.backward(d_h1.astype(np.float32))
        # SGD step
        for module in (conv1, conv2):
            module.weight -= lr * module.weight_grad
            module.bias -= lr * module.bias_grad
        linear_w -= lr * d_linear_w
        linear_b -= lr * d_linear_b
    return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    train(args.steps)


if __name__ == "__main__":
    main()
