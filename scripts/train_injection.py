"""Train the shipped injection classifier from evals/security/injection_train.jsonl.

    python scripts/train_injection.py [--c 4.0] [--max-features 60000]

Never reads the test split. Writes stalwart/guard/injection_model.json (plain JSON weights, no
pickle): the same feature function (``stalwart.guard._classifier.features``) serves training
and inference, so the shipped model scores exactly what it was trained on. Needs the ``train``
extra (scikit-learn). Deterministic for a given data file and arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stalwart.guard._classifier import MODEL_PATH, features
from stalwart.guard._normalize import normalize, views

TRAIN = ROOT / "evals" / "security" / "injection_train.jsonl"


def training_texts(text: str, label: int) -> list[str]:
    """The views the detector will score. An obfuscated attack is learnt from its decoded form
    (the blob itself is not evidence); a benign text must score low in every view."""
    vs = views(text)
    if label == 1 and len(vs) > 1:
        return [v for name, v in vs if name != "normalized"]
    return [v for _, v in vs] if label == 0 else [normalize(text)]


def main() -> None:
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=TRAIN)
    ap.add_argument("--out", type=Path, default=MODEL_PATH)
    ap.add_argument("--c", type=float, default=4.0)
    ap.add_argument("--min-df", type=int, default=2)
    ap.add_argument("--max-features", type=int, default=60000)
    ap.add_argument("--char-n", type=int, nargs=2, default=(3, 4), metavar=("MIN", "MAX"))
    args = ap.parse_args()
    if "test" in args.data.name:
        raise SystemExit("refusing to train on a test split")

    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts: list[str] = []
    labels: list[int] = []
    for row in rows:
        for t in training_texts(row["text"], int(row["label"])):
            texts.append(t)
            labels.append(int(row["label"]))

    char_n = tuple(args.char_n)
    feats = [features(t, char_n) for t in texts]
    df: dict[str, int] = {}
    for f in feats:
        for k in f:
            df[k] = df.get(k, 0) + 1
    vocab = {k: i for i, k in enumerate(sorted(k for k, n in df.items() if n >= args.min_df))}
    data, ind, ptr = [], [], [0]
    for f in feats:
        vals = [(vocab[k], 1.0 + math.log(c)) for k, c in f.items() if k in vocab]
        norm = math.sqrt(sum((1.0 + math.log(c)) ** 2 for c in f.values())) or 1.0
        for j, v in sorted(vals):
            ind.append(j)
            data.append(v / norm)
        ptr.append(len(ind))
    x = csr_matrix((np.array(data), np.array(ind), np.array(ptr)), shape=(len(feats), len(vocab)))
    y = np.array(labels)
    model = LogisticRegression(C=args.c, max_iter=2000, class_weight="balanced", solver="liblinear")
    model.fit(x, y)
    coef = model.coef_[0]
    inv = {i: k for k, i in vocab.items()}
    order = np.argsort(-np.abs(coef))[: args.max_features]
    weights = {inv[int(i)]: round(float(coef[i]), 5) for i in order if abs(coef[i]) >= 1e-4}
    acc = float((model.predict(x) == y).mean())
    digest = hashlib.sha256(args.data.read_bytes()).hexdigest()[:16]
    out = {
        "version": f"ngram-lr-{digest}-c{args.c}",
        "trained_on": str(args.data.relative_to(ROOT)) if args.data.is_relative_to(ROOT) else str(args.data),
        "train_sha256_16": digest,
        "char_n": list(char_n),
        "word_n": [1, 2],
        "bias": round(float(model.intercept_[0]), 5),
        "weights": dict(sorted(weights.items())),
    }
    args.out.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    print(
        f"{len(texts)} texts, vocab {len(vocab)}, kept {len(weights)} weights, train acc {acc:.4f} -> {args.out}"
    )


if __name__ == "__main__":
    main()
