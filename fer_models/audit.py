"""``python -m fer_models.audit --data PATH``: what is in a FER2013 file before anything trains on it.

Reports class counts per split, pixel-identical duplicates within each split and across splits
(with how many of them disagree on the label), near-blank images, and writes a contact sheet PNG
of examples per class plus ``audit.json`` (all numbers) and ``duplicates.csv`` (every duplicated
row, for pandas). :func:`drop_cross_split_duplicates` is what ``search.drop_duplicates`` uses so no
face of the evaluation splits is trained on.

Example:
    >>> import numpy as np
    >>> from fer_models.data import FER2013, Split
    >>> a = np.zeros((2, 48, 48), np.uint8); a[1] += 1
    >>> data = FER2013(Split(a, np.array([0, 1])), Split(a[:1], np.array([0])), Split(a[1:], np.array([1])))
    >>> audit(data)["across_splits"]["Training & PublicTest"]["distinct_images"]
    1
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from .cli import (EXIT_BAD_INPUT, add_data_argument, error_line, positive_int, prog,
                  resolve_data_path)
from .data import EMOTIONS, FER2013, NUM_PIXELS, DataError, Split, load_fer2013

SPLITS = ("Training", "PublicTest", "PrivateTest")
NEAR_BLANK_STD = 2.0  # grey-level standard deviation below which an image shows nothing


def _splits(data: FER2013) -> dict[str, Split]:
    return {name: s for name, s in zip(SPLITS, (data.train, data.public_test, data.private_test))
            if s is not None}


def _keys(images: np.ndarray) -> np.ndarray:
    """One hashable value per image: its 2304 bytes as a numpy void scalar (exact equality)."""
    flat = np.ascontiguousarray(images.reshape(len(images), NUM_PIXELS))
    return flat.view(np.dtype((np.void, flat.shape[1]))).ravel()


def audit(data: FER2013, near_blank_std: float = NEAR_BLANK_STD) -> dict:
    """All the audit's numbers as one JSON-ready dict (see the module docstring)."""
    splits = _splits(data)
    keys = {name: _keys(s.images) for name, s in splits.items()}
    report: dict = {"class_counts": {}, "within_split": {}, "across_splits": {}, "near_blank": {},
                    "overexposed": {}}
    for name, s in splits.items():
        counts = np.bincount(s.labels, minlength=len(EMOTIONS))
        report["class_counts"][name] = {"total": int(len(s)),
                                        **{e: int(c) for e, c in zip(EMOTIONS, counts)}}
        uniq, inverse, count = np.unique(keys[name], return_inverse=True, return_counts=True)
        dup_groups = np.flatnonzero(count > 1)
        # A group "conflicts" when its copies carry more than one label.
        conflicting = sum(len(set(s.labels[inverse == g].tolist())) > 1 for g in dup_groups)
        report["within_split"][name] = {
            "images_with_a_copy": int(count[dup_groups].sum()),
            "distinct_duplicated_images": int(len(dup_groups)),
            "extra_copies": int((count[dup_groups] - 1).sum()),
            "label_conflicts": int(conflicting)}
        flat = s.images.reshape(len(s), NUM_PIXELS).astype(np.float32)
        report["near_blank"][name] = {"count": int((flat.std(1) < near_blank_std).sum()),
                                      "threshold_std": near_blank_std}
        # Faces whose highlights are clipped: a fifth or more of the pixels at pure white.
        report["overexposed"][name] = int(((flat == 255).mean(1) >= 0.2).sum())
    # The whole file at once: duplicate groups, and how many of them span more than one split.
    all_keys = np.concatenate(list(keys.values()))
    split_of = np.repeat(np.arange(len(splits)), [len(s) for s in splits.values()])
    _, group, count = np.unique(all_keys, return_inverse=True, return_counts=True)
    group = group.ravel()
    dup = count[group] > 1
    spans = np.unique(np.stack([group[dup], split_of[dup]], 1), axis=0)[:, 0]
    report["whole_file"] = {"duplicate_groups": int((count > 1).sum()),
                            "rows_in_duplicate_groups": int(dup.sum()),
                            "groups_across_splits": int((np.bincount(spans) > 1).sum())}
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = np.intersect1d(keys[a], keys[b])
            in_a, in_b = np.isin(keys[a], shared), np.isin(keys[b], shared)
            report["across_splits"][f"{a} & {b}"] = {
                "distinct_images": int(len(shared)),
                f"rows_in_{a}": int(in_a.sum()), f"rows_in_{b}": int(in_b.sum())}
    return report


def duplicate_rows(data: FER2013):
    """A pandas table of every row whose pixels occur more than once anywhere in the file."""
    import pandas as pd

    splits = _splits(data)
    _, group, count = np.unique(np.concatenate([_keys(s.images) for s in splits.values()]),
                                return_inverse=True, return_counts=True)
    table = pd.DataFrame({
        "split": np.repeat(list(splits), [len(s) for s in splits.values()]),
        "row_in_split": np.concatenate([np.arange(len(s)) for s in splits.values()]),
        "label": [EMOTIONS[i] for s in splits.values() for i in s.labels],
        "group": group.ravel(), "copies": count[group.ravel()]})
    return table[table["copies"] > 1].sort_values(["group", "split", "row_in_split"]) \
        .reset_index(drop=True)


def private_test_copies(data: FER2013) -> dict[str, int]:
    """How many Training and PublicTest rows (what a search trains and ranks on) are
    pixel-identical to a PrivateTest face: FER2013 has such cross-split copies, through which
    PrivateTest can leak into selection; ``drop_cross_split_duplicates`` makes both 0.

    >>> import numpy as np
    >>> face = np.zeros((1, 48, 48), np.uint8)
    >>> other = np.ones((2, 48, 48), np.uint8)
    >>> data = FER2013(Split(np.concatenate([face, other]), np.zeros(3, np.int64)),
    ...                Split(other, np.zeros(2, np.int64)), Split(face, np.zeros(1, np.int64)), "x")
    >>> private_test_copies(data)
    {'Training': 1, 'PublicTest': 0}
    """
    if data.private_test is None or not len(data.private_test):
        return {"Training": 0, "PublicTest": 0}
    held = _keys(data.private_test.images)
    return {name: int(np.isin(_keys(s.images), held).sum()) if len(s) else 0
            for name, s in (("Training", data.train), ("PublicTest", data.public_test))}


def drop_cross_split_duplicates(data: FER2013) -> tuple[FER2013, dict]:
    """Remove Training rows pixel-identical to a PublicTest or PrivateTest image, and PublicTest
    rows identical to a PrivateTest image (PublicTest is trained on by a ``train_on_public``
    retrain). PrivateTest is never changed. Returns the new data and the counts removed."""
    held_out = [s for s in (data.public_test, data.private_test) if s is not None and len(s)]
    train_keys = _keys(data.train.images)
    keep_train = ~np.isin(train_keys, np.concatenate([_keys(s.images) for s in held_out])) \
        if held_out else np.ones(len(train_keys), bool)
    keep_public = np.ones(len(data.public_test), bool)
    if data.private_test is not None and len(data.private_test) and len(data.public_test):
        keep_public = ~np.isin(_keys(data.public_test.images), _keys(data.private_test.images))
    dropped = {"Training": int((~keep_train).sum()), "PublicTest": int((~keep_public).sum())}
    new = dataclasses.replace(
        data, train=Split(data.train.images[keep_train], data.train.labels[keep_train]),
        public_test=Split(data.public_test.images[keep_public], data.public_test.labels[keep_public]))
    return new, dropped


def contact_sheet(data: FER2013, path: str | Path, per_class: int = 12, seed: int = 0) -> Path:
    """A PNG grid: one row per emotion of random Training faces, labelled with the class count."""
    from PIL import Image, ImageDraw

    split = data.train if len(data.train) else next(iter(_splits(data).values()))
    rng = np.random.default_rng(seed)
    cell, label_w, pad = 64, 150, 2
    sheet = Image.new("L", (label_w + per_class * (cell + pad), len(EMOTIONS) * (cell + pad)), 255)
    draw = ImageDraw.Draw(sheet)
    for row, emotion in enumerate(EMOTIONS):
        idx = np.flatnonzero(split.labels == row)
        draw.text((6, row * (cell + pad) + cell // 2 - 12), f"{row} {emotion}\n{len(idx)} images",
                  fill=0)
        for col, i in enumerate(rng.permutation(idx)[:per_class]):
            face = Image.fromarray(split.images[i]).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(face, (label_w + col * (cell + pad), row * (cell + pad)))
    path = Path(path)
    sheet.save(path)
    return path


def format_report(report: dict) -> str:
    import pandas as pd

    counts = pd.DataFrame(report["class_counts"]).T
    lines = ["Class counts per split:", counts.to_string(), "", "Pixel-identical duplicates within a split:"]
    lines += [f"  {name}: {v['images_with_a_copy']} rows in {v['distinct_duplicated_images']} groups "
              f"({v['extra_copies']} extra copies, {v['label_conflicts']} groups with conflicting labels)"
              for name, v in report["within_split"].items()]
    lines += ["", "Pixel-identical images shared across splits:"]
    for pair, v in report["across_splits"].items():
        rows = ", ".join(f"{k[len('rows_in_'):]} rows {n}" for k, n in v.items() if k.startswith("rows_in_"))
        lines.append(f"  {pair}: {v['distinct_images']} distinct images ({rows})")
    w = report["whole_file"]
    lines += ["", f"Whole file: {w['duplicate_groups']} groups of pixel-identical images "
              f"({w['rows_in_duplicate_groups']} rows), {w['groups_across_splits']} of them across splits"]
    lines += ["", f"Near-blank images (pixel std < {NEAR_BLANK_STD}):"]
    lines += [f"  {name}: {v['count']}" for name, v in report["near_blank"].items()]
    lines += ["", "Overexposed images (>= 20% of pixels at 255):"]
    lines += [f"  {name}: {n}" for name, n in report["overexposed"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("fer_models.audit"),
        description="Audit a FER2013 file: class counts per split, pixel-identical duplicates "
                    "within and across splits, near-blank images, and a contact sheet PNG.")
    add_data_argument(parser)
    parser.add_argument("--output", default="results/audit",
                        help="folder for audit.json, duplicates.csv and contact_sheet.png "
                             "(default: results/audit)")
    parser.add_argument("--per-class", type=positive_int, default=12, help="faces per class on the sheet")
    parser.add_argument("--json", action="store_true", help="print audit.json instead of tables")
    args = parser.parse_args(argv)
    try:
        data_path = resolve_data_path(args.data)
        data = load_fer2013(data_path)
    except DataError as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: cannot write to --output {out}: {e.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report = audit(data)
    report["source"] = str(data_path)
    (out / "audit.json").write_text(json.dumps(report, indent=2))
    duplicate_rows(data).to_csv(out / "duplicates.csv", index=False)
    sheet = contact_sheet(data, out / "contact_sheet.png", per_class=args.per_class)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        print(f"\nwrote {out / 'audit.json'}, {out / 'duplicates.csv'}, {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
