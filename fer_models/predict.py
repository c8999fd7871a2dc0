"""``python -m fer_models.predict MODEL_DIR IMAGE...``: the emotion of each face image.

Any size or colour mode is converted the way FER2013 was made: grayscale, resized to 48x48.
Exit code 2, with one line naming the file, for anything that is not a usable image.

Example:
    python -m fer_models.predict results/cpu-full/model face.jpg --json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .data import EMOTIONS, IMAGE_SIZE

MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding them


class ImageInputError(ValueError):
    """A file that cannot be turned into a 48x48 grayscale face."""


def load_face(path: str | Path) -> np.ndarray:
    """Read an image file as (48, 48) uint8 grayscale, FER2013-style."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageInputError(f"{path}: image is {im.width}x{im.height}, larger than "
                                      f"{MAX_PIXELS:,} pixels")
            if im.width < 1 or im.height < 1:
                raise ImageInputError(f"{path}: empty image")
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)  # transparent -> white, not black
            im = im.convert("L")  # CMYK, RGB, I;16 ... -> 8-bit luminance
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise ImageInputError(f"{path}: not a readable image ({e})") from None
    except OSError as e:
        raise ImageInputError(f"{path}: cannot decode the image ({e})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fer_models.predict",
        description="Print the emotion and class probabilities of each face image, using a "
                    "model folder written by the search (model.safetensors + config.json).")
    parser.add_argument("model_dir", help="folder with model.safetensors and config.json")
    parser.add_argument("images", nargs="+", help="image files (any size or colour mode)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--tta", action="store_true", help="average ten crops and their flips")
    args = parser.parse_args(argv)

    from .checkpoint import CONFIG_FILE, MODEL_FILE, load_model
    from .evaluate import predict_proba

    model_dir = Path(args.model_dir)
    if not (model_dir / MODEL_FILE).is_file() or not (model_dir / CONFIG_FILE).is_file():
        print(f"error: {model_dir}: not a model folder (needs {MODEL_FILE} and {CONFIG_FILE})",
              file=sys.stderr)
        return 2
    try:
        faces = np.stack([load_face(p) for p in args.images])  # validate all before any compute
    except ImageInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model, cfg = load_model(model_dir)
    probs = predict_proba(model, faces, cfg.input_size, cfg.in_chans, tta=args.tta)
    for path, p in zip(args.images, probs):
        label = EMOTIONS[int(p.argmax())]
        if args.json:
            print(json.dumps({"file": path, "emotion": label,
                              "probabilities": {e: round(float(x), 6) for e, x in zip(EMOTIONS, p)}}))
        else:
            top = ", ".join(f"{e} {x:.2f}" for e, x in sorted(zip(EMOTIONS, p), key=lambda t: -t[1])[:3])
            print(f"{path}: {label} ({top})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
