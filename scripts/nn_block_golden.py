#!/usr/bin/env python3
"""Golden fixture of a pre-LN Transformer block, forward and backward, for tests/test_nn_golden.c.

An independent reference: the block is written here in numpy float64 (nothing shared with the C
code but the formulas), and its gradients are central differences in float64 (h = 1e-6, error
~1e-9) of L = sum(y * dy) with respect to the input and every parameter.

    h = x + MHA(LN1(x))          causal, key lengths [5, 3], 2 heads, scale 1/sqrt(head dim)
    y = h + FC2(GELU(FC1(LN2(h))))   GELU erf form; Linear: x W^T + b with W (out, in)

Writes tests/fixtures/nn_block_golden.safetensors with F64 tensors:
  x (B, N, D), dy (B, N, D), y (B, N, D), grad.x, and for each parameter P (names as
  attn_nn_block_init gives them): param.P and grad.P. Metadata: dims and key lengths.

Run from the repository root: python3 scripts/nn_block_golden.py
"""
import json
import math
import struct

import numpy as np

B, N, D, H, HIDDEN = 2, 5, 16, 2, 32
KEY_LENS = [5, 3]
EPS = 1e-5

rng = np.random.default_rng(20261121)
erf = np.frompyfunc(math.erf, 1, 1)


def layernorm(x, g, b):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + EPS) * g + b


def linear(x, p, name):
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)).astype(np.float64))


def mha(x, p):
    hd = D // H

    def heads(t):
        return t.reshape(B, N, H, hd).transpose(0, 2, 1, 3)

    q, k, v = (heads(linear(x, p, "attn." + n)) for n in ("wq", "wk", "wv"))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    i = np.arange(N)[:, None]
    j = np.arange(N)[None, :]
    for b in range(B):
        blocked = (j > i) | (j >= KEY_LENS[b])
        s[b][:, blocked] = -np.inf
    s = s - s.max(-1, keepdims=True)
    a = np.exp(s)
    a = a / a.sum(-1, keepdims=True)
    o = (a @ v).transpose(0, 2, 1, 3).reshape(B, N, D)
    return linear(o, p, "attn.wo")


def block(x, p):
    h = x + mha(layernorm(x, p["ln1.gamma"], p["ln1.beta"]), p)
    f = linear(gelu(linear(layernorm(h, p["ln2.gamma"], p["ln2.beta"]), p, "mlp.fc1")), p, "mlp.fc2")
    return h + f


# Parameters in attn_nn_block_init's order, randomised (norm gains around 1).
shapes = [("ln1.gamma", (D,)), ("ln1.beta", (D,))]
for n in ("wq", "wk", "wv", "wo"):
    shapes += [("attn.%s.weight" % n, (D, D)), ("attn.%s.bias" % n, (D,))]
shapes += [("ln2.gamma", (D,)), ("ln2.beta", (D,)), ("mlp.fc1.weight", (HIDDEN, D)), ("mlp.fc1.bias", (HIDDEN,)),
           ("mlp.fc2.weight", (D, HIDDEN)), ("mlp.fc2.bias", (D,))]
params = {}
for name, shape in shapes:
    if name.endswith("gamma"):
        params[name] = 1.0 + 0.2 * rng.standard_normal(shape)
    elif name.endswith("weight"):
        params[name] = rng.standard_normal(shape) / math.sqrt(shape[1])
    else:
        params[name] = 0.1 * rng.standard_normal(shape)
# Values representable in f32, so the C test starts from exactly the same numbers.
params = {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}
x = rng.standard_normal((B, N, D)).astype(np.float32).astype(np.float64)
dy = rng.standard_normal((B, N, D)).astype(np.float32).astype(np.float64)

y = block(x, params)


def grad_of(t):
    g = np.zeros_like(t)
    h = 1e-6
    for idx in np.ndindex(t.shape):
        old = t[idx]
        t[idx] = old + h
        lp = float((block(x, params) * dy).sum())
        t[idx] = old - h
        lm = float((block(x, params) * dy).sum())
        t[idx] = old
        g[idx] = (lp - lm) / (2 * h)
    return g


tensors = {"x": x, "dy": dy, "y": y, "grad.x": grad_of(x)}
for name, _ in shapes:
    tensors["param." + name] = params[name]
    tensors["grad." + name] = grad_of(params[name])

# safetensors: 8-byte little-endian header length, JSON header, raw little-endian data.
header, blobs, offset = {}, [], 0
for name, arr in tensors.items():
    data = np.ascontiguousarray(arr, dtype="<f8").tobytes()
    header[name] = {"dtype": "F64", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
header["__metadata__"] = {"B": str(B), "N": str(N), "D": str(D), "heads": str(H), "hidden": str(HIDDEN),
                          "key_lens": ",".join(map(str, KEY_LENS)), "causal": "1"}
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * ((8 - len(text) % 8) % 8)
with open("tests/fixtures/nn_block_golden.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for blob in blobs:
        f.write(blob)
print("wrote tests/fixtures/nn_block_golden.safetensors: %d tensors, %d bytes of data" % (len(tensors), offset))
