"""ONNX export of a saved model or ensemble: uint8 faces in, class probabilities out.

The exported graph includes what the Python side does around the network (scaling, normalising,
resizing to each member's input size, grey -> 3 channels, softmax, the ensemble mean), so an ONNX
user feeds the same (N, 48, 48) uint8 faces as ``fer_models.predict`` and gets the same numbers.
It uses torch's ``torch.export``-based exporter (``dynamo=True``, needs onnxscript) with a dynamic
batch dimension.

Example:
    python -m fer_models.export results/cpu-full/model            # writes model/model.onnx
    python -m fer_models.export results/cpu-full/ensemble --check # and compares with PyTorch
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .augment import prepare_batch
from .cli import EXIT_BAD_INPUT, error_line, prog
from .data import EMOTIONS, IMAGE_SIZE
from .ensemble import ENSEMBLE_FILE, Predictor, load_predictor

OPSET = 18  # onnxruntime >= 1.14 runs it; the lowest the torch.export-based exporter emits
INPUT_NAME, OUTPUT_NAME = "faces", "probabilities"


class FacesToProbabilities(torch.nn.Module):
    """(N, 48, 48) uint8 faces -> (N, 7) mean class probabilities of every member."""

    def __init__(self, predictor: Predictor):
        super().__init__()
        self.models = torch.nn.ModuleList(m.eval() for m, _ in predictor.members)
        self.views = [(cfg.input_size, cfg.in_chans, cfg.crop) for _, cfg in predictor.members]

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        probs = [F.softmax(model(prepare_batch(faces, size, chans, crop)), dim=1)
                 for model, (size, chans, crop) in zip(self.models, self.views)]
        return torch.stack(probs).mean(0)


def export_onnx(model_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Export the model (or ensemble) in ``model_dir``; default file: ``model_dir/model.onnx``
    (``ensemble.onnx`` for an ensemble). Returns the path written."""
    model_dir = Path(model_dir)
    predictor = load_predictor(model_dir)
    default = "ensemble.onnx" if (model_dir / ENSEMBLE_FILE).is_file() else "model.onnx"
    return export_predictor(predictor, Path(output) if output else model_dir / default)


def export_predictor(predictor: Predictor, output: str | os.PathLike) -> Path:
    """Export models in memory (``Predictor``) to ``output``, as :func:`export_onnx` does."""
    output = Path(output)
    module = FacesToProbabilities(predictor).eval()
    module.to(memory_format=torch.contiguous_format)  # ONNX has no layouts; trace plain NCHW
    example = torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's own deprecation chatter
        program = torch.onnx.export(module, (example,), dynamo=True, opset_version=OPSET,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
                                    verbose=False)
    tmp = output.with_suffix(".onnx.tmp")
    program.save(str(tmp))
    tmp.replace(output)  # a half-written file must never look like a finished export
    return output


def onnx_session(onnx_file: str | os.PathLike, threads: int = 0):
    """An onnxruntime CPU session of an exported file; ``threads`` > 0 caps its intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])


def onnx_probabilities(onnx_file: str | os.PathLike, faces: np.ndarray) -> np.ndarray:
    """Run an exported file with onnxruntime on (N, 48, 48) uint8 faces."""
    return onnx_session(onnx_file).run(
        [OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(faces, dtype=np.uint8)})[0]


def max_difference(model_dir: str | os.PathLike, onnx_file: str | os.PathLike,
                   faces: np.ndarray) -> float:
    """Largest absolute difference between PyTorch's and onnxruntime's probabilities."""
    torch_probs = load_predictor(model_dir).predict_proba(faces)
    return float(np.abs(onnx_probabilities(onnx_file, faces) - torch_probs).max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("fer_models.export"),
        description="Export a model or ensemble folder to ONNX: input 'faces' uint8 (N, 48, 48), "
                    "output 'probabilities' float (N, 7) in the order " + ", ".join(EMOTIONS) + ".")
    parser.add_argument("model_dir", help="a model folder (model.safetensors + config.json) or an "
                        "ensemble folder (ensemble.json)")
    parser.add_argument("--output", help="ONNX file (default: model.onnx / ensemble.onnx inside "
                        "MODEL_DIR)")
    parser.add_argument("--check", action="store_true",
                        help="run the export with onnxruntime on random faces and print the "
                             "largest difference from PyTorch (exit 1 above 1e-4)")
    args = parser.parse_args(argv)
    try:
        path = export_onnx(args.model_dir, args.output)
    # a missing file, corrupt JSON (InputFileError) or config, weights that do not load
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {path}")
    if args.check:
        faces = np.random.default_rng(0).integers(0, 256, (16, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        diff = max_difference(args.model_dir, path, faces)
        print(f"max |onnxruntime - pytorch| probability difference: {diff:.2e}")
        return 0 if diff <= 1e-4 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
