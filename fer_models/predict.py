"""``python -m fer_models.predict MODEL_DIR IMAGE...``: the emotion of each face image.

MODEL_DIR is a model folder or an ensemble folder written by the search. Any size or colour mode
is converted the way FER2013 was made: grayscale, resized to 48x48. A larger photo (either side
above 96 px) is first cropped to its largest face with OpenCV's bundled Haar cascade
(``--face-crop auto``, needs ``pip install 'fer-search[face]'``); without a detection the whole
image is used and the output says so ("no face found" in the line, ``"face_found": false`` in
``--json``); ``--face-crop on`` refuses such an image. Without images it scores a whole split of ``--data`` instead
(``--usage PrivateTest``; ``--data`` defaults to ``$FER2013_CSV``, then ``data/fer2013.csv``).
Exit code 2, with one line naming the file, for anything that is not a usable input.

Example:
    python -m fer_models.predict results/cpu-full/model face.jpg --json
    python -m fer_models.predict results/cpu-full/ensemble --data fer2013.csv --usage PrivateTest --tta
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .cli import EXIT_BAD_INPUT, add_data_argument, error_line, prog, resolve_data_path
from .data import EMOTIONS, IMAGE_SIZE, SPLITS
from .textfiles import require_regular_file

MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding them
PHOTO_MIN_SIDE = 96       # above this an image is a photo to search for a face, not a face crop
FACE_MARGIN = 0.15        # FER2013 crops show some hair and chin: widen the tight Haar box by this


class ImageInputError(ValueError):
    """A file that cannot be turned into a 48x48 grayscale face."""


class FaceCropUnavailable(RuntimeError):
    """``face_crop="on"`` without OpenCV installed."""


class LoadedFace(NamedTuple):
    """An image file as the model sees it."""
    face: np.ndarray        # (48, 48) uint8 grayscale
    box: list[int] | None   # [x, y, w, h] the face was cropped from; None: the whole image
    searched: bool          # a face detector looked at the image, whether or not it found one

    @property
    def no_face_found(self) -> bool:
        return self.searched and self.box is None


def load_face(path: str | Path, face_crop: str = "off") -> np.ndarray:
    """Read an image file as (48, 48) uint8 grayscale, FER2013-style (see :func:`load_face_info`)."""
    return load_face_info(path, face_crop)[0]


def load_face_info(path: str | Path, face_crop: str = "auto") -> LoadedFace:
    """The (48, 48) uint8 face of an image file and where it came from. ``face_crop``: "auto"
    (photos larger than 96 px, when OpenCV is installed), "on" (an image without a face is an
    :class:`ImageInputError`), "off"."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    require_regular_file(path, error=ImageInputError)
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
            box, searched = None, False
            if face_crop == "on" or (face_crop == "auto" and max(im.size) > PHOTO_MIN_SIDE):
                box, searched = _search_face(np.asarray(im), required=face_crop == "on")
                if box is not None:
                    im = im.crop(_widen(box, im.size))
                elif face_crop == "on":
                    raise ImageInputError(f"{path}: no face found (--face-crop on)")
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            return LoadedFace(np.asarray(im, dtype=np.uint8).copy(), box, searched)
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise ImageInputError(f"{path}: not a readable image ({e})") from None
    except OSError as e:
        raise ImageInputError(f"{path}: cannot decode the image ({e})") from None
    except ImageInputError:
        raise
    except Exception as e:  # a decoder fed a crafted file raises what it likes (SyntaxError, ...)
        raise ImageInputError(f"{path}: cannot decode the image ({type(e).__name__}: {e})") from None


def find_face(gray: np.ndarray, required: bool = False) -> list[int] | None:
    """The largest frontal face ``[x, y, w, h]`` in a grayscale image, or None. Without OpenCV:
    None, or :class:`FaceCropUnavailable` when ``required``."""
    return _search_face(gray, required)[0]


def _search_face(gray: np.ndarray, required: bool) -> tuple[list[int] | None, bool]:
    """:func:`find_face`'s box, and whether a detector looked at the image at all."""
    try:
        import cv2
    except ImportError:
        if required:
            raise FaceCropUnavailable("face cropping needs OpenCV: pip install "
                                      "'opencv-python-headless<5' (or this project's [face] extra)")
        return None, False
    try:
        cascade = _cascade(cv2)
        side = min(gray.shape[:2])
        faces = cascade.detectMultiScale(np.ascontiguousarray(gray), scaleFactor=1.1,
                                         minNeighbors=5, minSize=(max(24, side // 10),) * 2)
    except (FaceCropUnavailable, AttributeError, cv2.error) as e:
        # An OpenCV build without the bundled cascades: "auto" uses the whole image.
        if required:
            raise FaceCropUnavailable(f"face cropping needs OpenCV's Haar cascade: {e}") from None
        return None, False
    if len(faces) == 0:
        return None, True
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    return [int(x), int(y), int(w), int(h)], True


_CASCADE = None


def _cascade(cv2):
    global _CASCADE
    if _CASCADE is None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        if not path.is_file():  # OpenCV 5 wheels ship no cascades
            raise FaceCropUnavailable(f"{path} is missing: install opencv-python-headless<5")
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise FaceCropUnavailable(f"{path} could not be loaded")
        _CASCADE = cascade
    return _CASCADE


def _widen(box: list[int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    x, y, w, h = box
    m = int(round(FACE_MARGIN * max(w, h)))
    return max(0, x - m), max(0, y - m), min(size[0], x + w + m), min(size[1], y + h + m)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("fer_models.predict"),
        description="Print the emotion and class probabilities of each face image, or score a "
                    "whole split of a FER2013 CSV, with a model or ensemble folder written by "
                    "the search.")
    parser.add_argument("model_dir", help="model folder (model.safetensors + config.json) or "
                        "ensemble folder (ensemble.json)")
    parser.add_argument("images", nargs="*", help="image files (any size or colour mode)")
    parser.add_argument("--json", action="store_true", help="machine-readable output: one JSON "
                        "object per image, or one for a scored split")
    parser.add_argument("--tta", action="store_true", help="average ten crops and their flips")
    parser.add_argument("--face-crop", choices=("auto", "on", "off"), default="auto",
                        help="crop photos to their largest face first (auto: images larger than "
                             f"{PHOTO_MIN_SIDE} px, when OpenCV is installed; default: auto)")
    add_data_argument(parser, what=": without IMAGES, score a split of it")
    parser.add_argument("--usage", default="PrivateTest", choices=SPLITS,
                        help="the split scored without IMAGES (default: PrivateTest)")
    parser.add_argument("--predictions", metavar="FILE.csv",
                        help="when scoring a split: also write one row per face (label, "
                             "prediction, probabilities) for pandas")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.images and args.data:
        parser.error("give IMAGE files or --data PATH (one of the two)")
    if args.predictions and args.images:
        parser.error("--predictions is for scoring a split (no IMAGE files)")
    if args.predictions and not _writable_file(Path(args.predictions)):
        print(f"error: --predictions {args.predictions}: cannot write a file there (a folder, "
              "or a folder that is missing or read-only)", file=sys.stderr)
        return EXIT_BAD_INPUT

    from .ensemble import is_predictor_folder

    model_dir = Path(args.model_dir)
    if not is_predictor_folder(model_dir):
        print(f"error: {model_dir}: not a model folder (needs model.safetensors and config.json, "
              "or ensemble.json)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.images:
        return _score_split(args, model_dir)
    try:  # validate every input before any compute
        loaded = [load_face_info(p, args.face_crop) for p in args.images]
    except (ImageInputError, FaceCropUnavailable) as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    faces = np.stack([item.face for item in loaded])
    predictor = _load(model_dir)
    if predictor is None:
        return EXIT_BAD_INPUT
    probs = predictor.predict_proba(faces, tta=args.tta)
    for path, item, p in zip(args.images, loaded, probs):
        print(_image_line(path, item, p, args.json))
    return 0


def _image_line(path: str, item, probs: np.ndarray, as_json: bool) -> str:
    """One image's output: its emotion, top classes and where the face was (or was not) found."""
    label = EMOTIONS[int(probs.argmax())]
    if as_json:
        return json.dumps({"file": path, "emotion": label, "face": item.box,
                           "face_found": None if not item.searched else item.box is not None,
                           "probabilities": {e: round(float(x), 6) for e, x in zip(EMOTIONS, probs)}})
    top = ", ".join(f"{e} {x:.2f}" for e, x in sorted(zip(EMOTIONS, probs), key=lambda t: -t[1])[:3])
    if item.box:
        where = f" [face at {item.box}]"
    elif item.no_face_found:
        where = " [no face found: the whole image was used]"
    else:
        where = ""
    return f"{path}: {label} ({top}){where}"


def _writable_file(path: Path) -> bool:
    """Checked before the model is scored: a bad --predictions path must not cost the compute."""
    if path.is_file():
        return os.access(path, os.W_OK)
    return not path.exists() and path.parent.is_dir() and os.access(path.parent, os.W_OK)


def _load(model_dir: Path):
    """The model or ensemble, or None after printing why it cannot be loaded."""
    from .ensemble import load_predictor

    try:
        return load_predictor(model_dir)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:  # bad JSON, weights, keys
        print(error_line(f"{model_dir}: cannot load the model ({type(e).__name__}: {e})"),
              file=sys.stderr)
        return None


def _score_split(args, model_dir: Path) -> int:
    from .data import DataError, load_fer2013
    from .evaluate import metrics_from_probs

    try:
        path = resolve_data_path(args.data)
        data = load_fer2013(path)
        data.require({args.usage: "--usage"})
    except DataError as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    split = data.split(args.usage)
    predictor = _load(model_dir)
    if predictor is None:
        return EXIT_BAD_INPUT
    probs = predictor.predict_proba(split.images, tta=args.tta)
    m = metrics_from_probs(probs, np.asarray(split.labels))
    record = {"split": args.usage, "n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
              "tta": args.tta, "models": len(predictor.members),
              "per_class_accuracy": m["per_class_accuracy"]}
    if args.predictions:
        import pandas as pd

        table = pd.DataFrame(probs, columns=[f"p_{e}" for e in EMOTIONS])
        table.insert(0, "predicted", [EMOTIONS[i] for i in probs.argmax(1)])
        table.insert(0, "label", [EMOTIONS[i] for i in split.labels])
        table.to_csv(args.predictions, index_label="row")
        record["predictions"] = args.predictions
    if args.json:
        print(json.dumps(record))
    else:
        kind = " with ten-crop TTA" if args.tta else ""
        print(f"{args.usage}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} "
              f"(n={m['n']}, {len(predictor.members)} model(s){kind})")
        for e, acc in m["per_class_accuracy"].items():
            print(f"  {e:<9} {acc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
