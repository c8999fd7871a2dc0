"""``python -m search.weights SPACE.yaml``: fetch, once, the ImageNet weights a space can use.

A space with ``pretrained: true`` (or ``{choice: [true, false]}``) trains from timm's ImageNet
weights, read from the Hugging Face hub cache. Trials never download (they run with
``HF_HUB_OFFLINE=1``); this command fills the cache before a search, on one machine: on a
cluster, the head, with the cache on the shared storage (docs/cluster.md). It prints what each
backbone needs, what is already cached and the size of what it fetched.

Example (the plan only, no network):
    python -m search.weights spaces/transfer.yaml --dry-run
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from fer_models.cli import EXIT_BAD_INPUT, error_line, prog
from fer_models.config import TrainConfig
from fer_models.textfiles import InputFileError, load_yaml
from fer_models.weights import (CACHE_ENV, FETCH_COMMAND, HubWeights, WeightsError,
                                cached_weights_file, check_weights_file, hub_cache_dir,
                                hub_weights)

from .space import SearchSpace, SpaceError, load_space


@dataclass
class PlannedWeights:
    """One backbone's ImageNet weights: where they come from and the cached file, if any."""
    source: HubWeights
    cached: Path | None

    @property
    def backbone(self) -> str:
        return self.source.backbone


def pretrained_backbones(space: SearchSpace) -> list[str]:
    """Backbones a trial of ``space`` can start from ImageNet weights with."""
    p = space.params.get("pretrained")
    can = p is not None and True in p.values()
    return space.backbones() if can else []


def seed_file_backbones(path: Path) -> list[str]:
    """Backbones of a seed-parity runs file (spaces/seed.yaml) that ask for ImageNet weights."""
    doc = load_yaml(path)
    common = doc.get("common") or {}
    names = []
    for run in doc.get("runs") or []:
        params = {**common, **(run.get("params") or {})}
        backbone = params.get("backbone", TrainConfig.backbone)
        if params.get("pretrained") and backbone not in names:
            names.append(backbone)
    return names


def plan(backbones: list[str], cache_dir: Path | None = None) -> list[PlannedWeights]:
    """What fetching the weights of ``backbones`` involves: one entry per backbone. Raises
    WeightsError for a backbone timm has no hub weights for. Offline: reads only the cache."""
    return [PlannedWeights(hub_weights(b), cached_weights_file(b, cache_dir)) for b in backbones]


def require_cached(space: SearchSpace, cache_dir: Path | None = None) -> None:
    """WeightsError, naming the backbones and the fetch command, unless every backbone the space
    can propose with ``pretrained: true`` has readable weights in the cache. Run before Ray."""
    backbones = pretrained_backbones(space)
    if not backbones:
        return
    entries = plan(backbones, cache_dir)
    # The command to run names the same cache this check read, or it would fill another one.
    fetch_cmd = f"{FETCH_COMMAND} {space.path}" + (f" --weights-cache {cache_dir}" if cache_dir else "")
    absent = [e.backbone for e in entries if e.cached is None]
    if absent:
        raise WeightsError(f"{space.path}: pretrained: ImageNet weights of {', '.join(absent)} "
                           f"are not in the Hugging Face cache {cache_dir or hub_cache_dir()}; "
                           f"trials never download: fetch them once with {fetch_cmd}")
    for entry in entries:
        try:
            check_weights_file(entry.cached)
        except WeightsError as e:
            raise WeightsError(f"{space.path}: pretrained: {entry.backbone}: {e}; fetch it again "
                               f"with {fetch_cmd} --force") from None


def fetch(entry: PlannedWeights, cache_dir: Path | None) -> Path:
    """Download one backbone's weights into the cache, the file timm would load (hub's code)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for name in entry.source.filenames:
        try:
            return Path(hf_hub_download(entry.source.repo_id, name, revision=entry.source.revision,
                                        cache_dir=str(cache_dir or hub_cache_dir()),
                                        force_download=entry.cached is not None))
        except EntryNotFoundError:
            continue
    raise WeightsError(f"{entry.source.repo_id} has none of {', '.join(entry.source.filenames)}")


def _size(path: Path | None) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB" if path is not None else "-"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog("search.weights"),
        description="Fetch, once, the ImageNet weights (timm, Hugging Face hub) of every backbone "
                    "a space can start from with pretrained: true, so that trials run offline.",
        epilog="Examples:\n"
               "  python -m search.weights spaces/transfer.yaml --dry-run   # what is needed\n"
               "  python -m search.weights spaces/transfer.yaml             # fetch what is missing\n"
               "  python -m search.weights spaces/seed.yaml --weights-cache /efs/hf-cache",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", help="a search-space YAML (or spaces/seed.yaml's runs file)")
    p.add_argument("--weights-cache", metavar="DIR", type=Path,
                   help=f"Hugging Face hub cache folder (default: ${CACHE_ENV}, else "
                        "$HF_HOME/hub, else ~/.cache/huggingface/hub); give search.run the same")
    p.add_argument("--dry-run", action="store_true", help="print the plan; download nothing")
    p.add_argument("--force", action="store_true", help="download again what is cached")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.space)
    try:
        if not path.is_file():
            raise SpaceError(f"{path}: no such file")
        doc = load_yaml(path)
        is_seed_file = isinstance(doc, dict) and "runs" in doc
        backbones = seed_file_backbones(path) if is_seed_file else pretrained_backbones(load_space(path))
        entries = plan(backbones, args.weights_cache)
    except (SpaceError, InputFileError, WeightsError) as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    cache = args.weights_cache or hub_cache_dir()
    if not entries:
        print(f"{path}: no trial starts from ImageNet weights (pretrained is not true in any "
              "choice): nothing to fetch")
        return 0
    print(f"cache: {cache}")
    for e in entries:
        state = f"cached, {_size(e.cached)}" if e.cached else "missing"
        print(f"  {e.backbone:<24} {e.source.repo_id:<40} {state}")
    todo = [e for e in entries if args.force or e.cached is None]
    if args.dry_run or not todo:
        print("nothing to fetch" if not todo else f"{len(todo)} to fetch (dry run: nothing fetched)")
        return 0
    total = 0
    for e in todo:
        print(f"fetching {e.source.repo_id} ...", flush=True)
        try:
            got = fetch(e, args.weights_cache)
            check_weights_file(got)
        except Exception as err:  # network, permissions, a repo without weights: say which
            print(f"error: {e.backbone}: {err}", file=sys.stderr)
            return 1
        total += got.stat().st_size
        print(f"  {e.backbone}: {got} ({_size(got)})", flush=True)
    print(f"fetched {len(todo)} file(s), {total / 2**20:.1f} MiB, into {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
