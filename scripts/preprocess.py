"""PrepareData: turn a raw image dataset into clean train/validation/test folders plus a manifest.

Runs as a SageMaker processing job and, relocated with SAGEMAKER_BASE_DIR, in the local engine (see
docs/container-contract.md). Input is a pre-split tree (train/, valid|val|validation/, test/, one folder per class in
each), one folder per class (split here, stratified), or .zip/.tar archives of either. Every image is decoded for real
and written as a plain RGB file; whatever cannot be used is skipped and named in OUT/report/manifest.json.

Output format rule, so that training sees the pixels the endpoint will make of the same original (both convert with
rgb_conversion.py): an upright RGB JPEG that fits --max-image-side is copied byte for byte; any other image that fits
is converted and written as PNG (lossless). An image shrunk to --max-image-side is written as JPEG (quality 95) when
it came from a JPEG or is over 1 megapixel (re-encoding a lossy photo losslessly only bloats it), else as PNG.

Decisions recorded in the manifest: a class with no usable training images (e.g. present only in valid/ or test/) is
dropped, as is one with fewer than --min-images-per-class usable images (default 3); a pre-split input without a
validation or test folder has it carved out of train/ by the fractions ("carved_from_train"). Validation and test
may lack a class; classes are always the sorted names of the kept classes, the same for every split.

Exit codes: 0 done; 2 unusable dataset or bad arguments, with one message on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

# safe_extract.py and rgb_conversion.py sit beside this file in the repo and in the local engine's code copy; in a
# SageMaker processing job the definition ships them as the "modules" inputs (one folder each under MODULES_DIR),
# because a script processor uploads only the one script.
MODULES_DIR = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")) / "processing" / "input" / "modules"
sys.path[:0] = [str(Path(__file__).resolve().parent),
                *(str(folder) for folder in sorted(MODULES_DIR.glob("*")) if folder.is_dir())]
from rgb_conversion import exif_orientation, upright_rgb  # noqa: E402
from safe_extract import DEFAULT_MAX_EXTRACTED_BYTES, ArchiveError, extract_archive, is_archive  # noqa: E402

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "validation", "val": "validation",
                 "validation": "validation", "test": "test", "testing": "test"}
# Three is the smallest class the split rule can put in every split, so every class shows up in validation and test.
DEFAULT_MIN_IMAGES_PER_CLASS = 3
# An 8K-square photo. Anything larger in a classification set is a scan or a decompression bomb.
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
PNG_MAX_PIXELS = 1024 * 1024
JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a phone's multi-picture JPEG; Pillow reads its first picture
JPEG_QUALITY = 95
# Below this many files a process pool costs more to start than it saves.
PARALLEL_MIN_FILES = 100
WORK_DIR_NAME = ".preprocess-work"


class DatasetError(Exception):
    """The dataset (or an argument about it) is unusable; the message says what is wrong and where."""


@dataclass(frozen=True)
class Candidate:
    rel: str  # path shown in the manifest, relative to the input folder (or the extracted archives)
    src: Path
    cls: str
    split: str | None  # the source split of a pre-split input; None for folder-per-class
    staged: Path  # where the worker writes the converted image, without extension


@dataclass
class Scan:
    layout: str
    classes: set[str]
    candidates: list[Candidate]
    skipped: list[dict[str, str]]
    split_folders: dict[str, str]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    base = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
    parser = argparse.ArgumentParser(description="Validate, convert and split an image-classification dataset.")
    parser.add_argument("--input-dir", type=Path, default=base / "processing/input/data")
    parser.add_argument("--output-dir", type=Path, default=base / "processing/output")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--min-images-per-class", type=int, default=DEFAULT_MIN_IMAGES_PER_CLASS)
    parser.add_argument("--max-image-side", type=int, default=0, help="shrink longer sides to this (px); 0: keep")
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                        help="larger images are skipped as decompression bombs")
    parser.add_argument("--max-extracted-bytes", type=int, default=DEFAULT_MAX_EXTRACTED_BYTES)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    return parser.parse_args(argv)


def validate_settings(val_fraction: float, test_fraction: float, min_images: int, max_side: int) -> None:
    """Raises DatasetError for settings no dataset could satisfy."""
    for flag, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 < value < 1:
            raise DatasetError(f"bad fractions: {flag} must be between 0 and 1 (exclusive), got {value}")
    if val_fraction + test_fraction >= 1:
        raise DatasetError(f"bad fractions: --val-fraction {val_fraction} + --test-fraction {test_fraction} = "
                           f"{val_fraction + test_fraction:g} leaves nothing for training; the sum must be below 1")
    if min_images < 1:
        raise DatasetError(f"--min-images-per-class must be at least 1, got {min_images}")
    if max_side < 0:
        raise DatasetError(f"--max-image-side must be 0 (no resize) or positive, got {max_side}")


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, validation, test) sizes for a class of n images: rounded fractions (half up), at least one training
    image, and at least one validation and test image when the class has 3 or more and the fraction is above 0."""
    if n <= 0:
        return 0, 0, 0
    n_val, n_test = math.floor(n * val_fraction + 0.5), math.floor(n * test_fraction + 0.5)
    if n >= 3:
        n_val = max(n_val, 1) if val_fraction > 0 else n_val
        n_test = max(n_test, 1) if test_fraction > 0 else n_test
    while n_val + n_test > n - 1:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def stratified_split(items_by_class: Mapping[str, Sequence[str]], val_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, dict[str, list[str]]]:
    """{split: {class: [items]}}, split class by class. Each class is shuffled by its own seeded generator (a str seed
    is hashed with SHA-512, so stable across runs and PYTHONHASHSEED), so one class never changes another's split."""
    result: dict[str, dict[str, list[str]]] = {split: {} for split in SPLITS}
    for cls in sorted(items_by_class):
        items = sorted(items_by_class[cls])
        random.Random(f"{seed}:{cls}").shuffle(items)
        _, n_val, n_test = split_counts(len(items), val_fraction, test_fraction)
        result["test"][cls] = sorted(items[:n_test])
        result["validation"][cls] = sorted(items[n_test:n_test + n_val])
        result["train"][cls] = sorted(items[n_test + n_val:])
    return result


def output_format(source_format: str | None, size: tuple[int, int], shrunk: bool) -> str:
    """PNG for every image that was not shrunk (lossless: training sees exactly the pixels the endpoint makes of
    the original); a shrunk one is JPEG when it came from a JPEG or is big, PNG otherwise (see the docstring)."""
    if shrunk and (source_format in JPEG_FORMATS or size[0] * size[1] > PNG_MAX_PIXELS):
        return "JPEG"
    return "PNG"


def kept_as_is(source_format: str | None, mode: str, orientation: int, shrunk: bool) -> bool:
    """An upright RGB JPEG that needs no shrinking is copied byte for byte: re-encoding it would change its
    pixels (JPEG) or bloat it (PNG)."""
    return source_format in JPEG_FORMATS and mode == "RGB" and orientation == 1 and not shrunk


def process_image(task: tuple[str, str, int, int]) -> tuple[str | None, str, str]:
    """Worker: decode, convert, resize and write one image. Returns (output file name or None, skip reason or "",
    source mode). Never raises for a bad file: a data problem is a skip, not a crash."""
    src, staged, max_side, max_pixels = task
    if os.path.getsize(src) == 0:
        return None, "empty file (0 bytes)", ""
    mode, default_cap = "", Image.MAX_IMAGE_PIXELS
    try:
        # The cap is passed with each task (a spawned worker would not inherit a global set in main) and restored.
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as img:
                mode, source_format, orientation = img.mode, img.format, exif_orientation(img)
                shrunk = bool(max_side) and max(img.size) > max_side
                if shrunk:
                    img.draft(img.mode, (max_side, max_side))  # JPEG decodes at a reduced scale: much faster
                img.load()
                rgb = upright_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, f"decompression bomb: {exc}", mode
    except UnidentifiedImageError:
        return None, "not an image (Pillow cannot identify the format)", mode
    except Exception as exc:  # noqa: BLE001 - every decoder failure of one file is a reason to skip it
        return None, f"undecodable image: {type(exc).__name__}: {exc}", mode
    finally:
        Image.MAX_IMAGE_PIXELS = default_cap
    if kept_as_is(source_format, mode, orientation, shrunk):
        shutil.copyfile(src, staged + ".jpg")
        return os.path.basename(staged + ".jpg"), "", mode
    if shrunk:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    fmt = output_format(source_format, rgb.size, shrunk)
    path = staged + (".jpg" if fmt == "JPEG" else ".png")
    if fmt == "JPEG":
        rgb.save(path, "JPEG", quality=JPEG_QUALITY)
    else:
        rgb.save(path, "PNG")
    return os.path.basename(path), "", mode


def run_tasks(tasks: list[tuple[str, str, int, int]], workers: int) -> list[tuple[str | None, str, str]]:
    """process_image over all tasks, results in task order (so everything downstream is deterministic)."""
    if workers <= 1 or len(tasks) < PARALLEL_MIN_FILES:
        return [process_image(task) for task in tasks]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(process_image, tasks, chunksize=max(1, len(tasks) // (workers * 8))))


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def list_folder(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(visible subfolders, visible files, hidden entries) of a folder, each sorted."""
    entries = sorted(folder.iterdir())
    hidden = [p for p in entries if is_hidden(p.name)]
    dirs = [p for p in entries if p.is_dir() and not is_hidden(p.name)]
    files = [p for p in entries if not p.is_dir() and not is_hidden(p.name)]
    return dirs, files, hidden


def resolve_root(folder: Path) -> tuple[Path, list[Path]]:
    """Descends through lone wrapper folders (`dogImages/`) to the folder holding the splits or the classes.

    A lone folder is a wrapper only if it has subfolders itself: one folder of images is a (single) class. Returns the
    root and the loose files passed on the way down, which the caller reports as skipped."""
    loose: list[Path] = []
    while True:
        dirs, files, hidden = list_folder(folder)
        if len(dirs) != 1 or dirs[0].name.lower() in SPLIT_ALIASES or not list_folder(dirs[0])[0]:
            return folder, loose
        loose += files + hidden
        folder = dirs[0]


def output_stems(rels: Sequence[str]) -> list[str]:
    """Flat, unique output names (no extension) for the files of one class: `sub/a.jpg` -> `sub_a`; clashes such as
    `a.jpg` + `a.png` become `a`, `a-2`."""
    used: set[str] = set()
    stems = []
    for rel in rels:
        stem = PurePosixPath(rel).with_suffix("").as_posix().replace("/", "_")
        unique, k = stem, 1
        while unique in used:
            k += 1
            unique = f"{stem}-{k}"
        used.add(unique)
        stems.append(unique)
    return stems


def _class_files(class_dir: Path) -> tuple[list[Path], list[Path]]:
    files, hidden = [], []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        hidden += [Path(dirpath, n) for n in dirnames if is_hidden(n)]
        dirnames[:] = sorted(n for n in dirnames if not is_hidden(n))
        for name in filenames:
            (hidden if is_hidden(name) else files).append(Path(dirpath, name))
    return sorted(files), sorted(hidden)


def skips(paths: Sequence[Path], base: Path, reason: str | None = None) -> list[dict[str, str]]:
    """Manifest entries for skipped paths (relative to `base`); reason None means hidden file or folder."""
    return [{"path": p.relative_to(base).as_posix() + ("/" if p.is_dir() else ""),
             "reason": reason or ("hidden folder" if p.is_dir() else "hidden file")} for p in paths]


def scan_dataset(root: Path, base: Path, staging: Path) -> Scan:
    """Finds the layout, the classes and every candidate file; hidden and misplaced files go to `skipped`."""
    dirs, files, hidden = list_folder(root)
    split_dirs: dict[str, Path] = {}
    for folder in dirs:
        split = SPLIT_ALIASES.get(folder.name.lower())
        if split and split in split_dirs:
            raise DatasetError(f"both {split_dirs[split].name}/ and {folder.name}/ in {root} look like the {split} "
                               "split; keep one")
        if split:
            split_dirs[split] = folder
    if split_dirs and "train" not in split_dirs:
        raise DatasetError(f"{root} has {', '.join(sorted(p.name + '/' for p in split_dirs.values()))} but no train/ "
                           "folder: give train/ (plus valid/ and test/) or one folder per class")
    skipped = skips(hidden, base) + skips(files, base, "not inside a class folder")
    groups: list[tuple[str | None, Path]] = sorted(split_dirs.items()) or [(None, root)]
    if split_dirs:
        skipped += skips([p for p in dirs if p not in split_dirs.values()], base,
                         "not a split folder (expected train, valid/val/validation or test)")
    scan = Scan("presplit" if split_dirs else "folder-per-class", set(), [], skipped,
                {split: folder.name for split, folder in split_dirs.items()})
    for split, folder in groups:
        class_dirs, loose, hidden_here = list_folder(folder) if split else (dirs, [], [])
        skipped += skips(hidden_here, base) + skips(loose, base, "not inside a class folder")
        for class_dir in class_dirs:
            scan.classes.add(class_dir.name)
            class_files, hidden_files = _class_files(class_dir)
            skipped += skips(hidden_files, base)
            rels = [p.relative_to(class_dir).as_posix() for p in class_files]
            stage_dir = staging / (split or "all") / class_dir.name
            for path, stem in zip(class_files, output_stems(rels), strict=True):
                rel = path.relative_to(base).as_posix()
                scan.candidates.append(Candidate(rel, path, class_dir.name, split, stage_dir / stem))
    return scan


def materialize_input(input_dir: Path, extract_dir: Path, max_bytes: int) -> tuple[Path, list[str], list[Path]]:
    """The folder to read the dataset from: the input itself, or its archives extracted when it holds no folders.

    Returns (base folder for manifest paths, archive names, archives ignored because real folders exist)."""
    if not input_dir.is_dir():
        raise DatasetError(f"input directory {input_dir} does not exist (or is not a directory)")
    dirs, files, _ = list_folder(input_dir)
    archives = [p for p in files if is_archive(p)]
    if not dirs and not files:
        raise DatasetError(f"input directory {input_dir} is empty: expected class folders, train/valid/test folders "
                           "or a .zip/.tar.gz archive of them")
    if dirs or not archives:
        return input_dir, [], archives
    budget = max_bytes
    for archive in archives:
        try:
            budget -= extract_archive(archive, extract_dir, budget)
        except ArchiveError as exc:
            raise DatasetError(f"{exc} (in {input_dir})") from exc
    return extract_dir, [p.name for p in archives], []


def drop_classes(scan: Scan, usable: list[tuple[Candidate, str]], min_images: int) -> tuple[list[str], list[dict]]:
    """(kept classes, dropped entries): a class needs `min_images` usable images, and training images."""
    total = Counter(cand.cls for cand, _ in usable)
    train = Counter(cand.cls for cand, _ in usable if cand.split in (None, "train"))
    kept, dropped = [], []
    for cls in sorted(scan.classes):
        if total[cls] == 0:
            dropped.append({"name": cls, "reason": "no usable images (empty or every file skipped)", "images": 0})
        elif train[cls] == 0:
            dropped.append({"name": cls, "reason": "no usable training images (only in validation/test)",
                            "images": total[cls]})
        elif total[cls] < min_images:
            dropped.append({"name": cls, "reason": f"only {total[cls]} usable image(s), fewer than "
                            f"--min-images-per-class {min_images}", "images": total[cls]})
        else:
            kept.append(cls)
    return kept, dropped


def assign_splits(scan: Scan, usable: list[tuple[Candidate, str]], kept: list[str], args: argparse.Namespace
                  ) -> tuple[dict[str, dict[str, list[tuple[Candidate, str]]]], list[str]]:
    """{split: {class: [(candidate, file name)]}} for the kept classes, and the splits carved out of train."""
    kept_set = set(kept)
    by_rel = {cand.rel: (cand, name) for cand, name in usable if cand.cls in kept_set}
    if scan.layout == "folder-per-class":
        pool, carved = by_rel, list(SPLITS[1:])
    else:
        pool = {r: item for r, item in by_rel.items() if item[0].split == "train"}
        carved = [split for split in SPLITS[1:] if split not in scan.split_folders]
    fractions = [args.val_fraction if "validation" in carved else 0.0, args.test_fraction if "test" in carved else 0.0]
    items_by_class: dict[str, list[str]] = {cls: [] for cls in kept}
    for r, (cand, _) in pool.items():
        items_by_class[cand.cls].append(r)
    split_rels = stratified_split(items_by_class, fractions[0], fractions[1], args.seed)
    assigned = {split: {cls: [by_rel[r] for r in split_rels[split][cls]] for cls in kept} for split in SPLITS}
    for cand, name in by_rel.values():
        if cand.split in ("validation", "test"):
            assigned[cand.split][cand.cls].append((cand, name))
    for split in SPLITS:
        if not any(assigned[split].values()):
            raise DatasetError(_empty_split_message(split, scan, carved, len(by_rel), len(kept), args))
    return assigned, carved


def _empty_split_message(split: str, scan: Scan, carved: list[str], n_images: int, n_classes: int,
                         args: argparse.Namespace) -> str:
    if split in carved:
        return (f"the {split} split is empty after splitting {n_images} usable images of {n_classes} classes "
                f"(--val-fraction {args.val_fraction}, --test-fraction {args.test_fraction}): every class is too "
                "small; each class needs 3 or more images to reach every split")
    folder = scan.split_folders.get(split, split)
    return f"the {split} split is empty: {folder}/ has no usable images of the kept classes"


def reason_kinds(skipped: list[dict[str, str]]) -> str:
    """`3 not an image, 1 empty file` - a one-line digest of skip reasons for messages."""
    kinds = Counter(item["reason"].split(":")[0].split(" (")[0] for item in skipped)
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


def scan_input(args: argparse.Namespace, work: Path) -> tuple[Scan, list[str]]:
    """Locates the dataset (extracting archives into `work`) and scans it; returns the scan and the archive names."""
    base, archives, ignored = materialize_input(args.input_dir, work / "extracted", args.max_extracted_bytes)
    root, loose = resolve_root(base)
    scan = scan_dataset(root, base, work / "staging")
    scan.skipped += skips([p for p in loose if is_hidden(p.name)], base)
    scan.skipped += skips([p for p in loose if not is_hidden(p.name)], base, "not inside a class folder")
    scan.skipped += skips(ignored, base, "archive ignored: the input already has folders")
    if not scan.classes:
        raise DatasetError(f"no class folders in {args.input_dir}: expected one folder per class or train/valid/test "
                           "folders of class folders")
    return scan, archives


def convert_all(scan: Scan, args: argparse.Namespace) -> tuple[list[tuple[Candidate, str]], Counter]:
    """Decodes and converts every candidate into the staging folder; returns the usable (candidate, file name) pairs
    and the source modes seen. Undecodable files are added to `scan.skipped`."""
    for parent in {cand.staged.parent for cand in scan.candidates}:
        parent.mkdir(parents=True, exist_ok=True)
    tasks = [(str(c.src), str(c.staged), args.max_image_side, args.max_image_pixels) for c in scan.candidates]
    print(f"preprocess: decoding {len(tasks)} files in {len(scan.classes)} class folders ({scan.layout})", flush=True)
    usable, modes = [], Counter()
    for cand, (name, reason, mode) in zip(scan.candidates, run_tasks(tasks, args.workers), strict=True):
        if name:
            usable.append((cand, name))
            modes[mode] += 1
        else:
            scan.skipped.append({"path": cand.rel, "reason": reason})
    if not usable:
        raise DatasetError(f"no usable images in {args.input_dir}: {len(scan.candidates)} files looked at, none "
                           f"decodable ({reason_kinds(scan.skipped) or 'no files'})")
    return usable, modes


def clear_output(input_dir: Path, out: Path) -> None:
    """Empties the folders this script owns in `out`, so a re-run never mixes old and new images - after making
    sure that cannot delete the input."""
    inp, resolved = input_dir.resolve(), out.resolve()
    if inp == resolved or inp in resolved.parents or resolved in inp.parents:
        raise DatasetError(f"--output-dir {out} and --input-dir {input_dir} overlap; use separate folders")
    for name in (*SPLITS, "report", WORK_DIR_NAME):
        shutil.rmtree(out / name, ignore_errors=True)


def prepare(args: argparse.Namespace, work: Path) -> dict:
    """Everything but argument parsing and error printing; writes the images and returns the manifest."""
    validate_settings(args.val_fraction, args.test_fraction, args.min_images_per_class, args.max_image_side)
    clear_output(args.input_dir, args.output_dir)
    scan, archives = scan_input(args, work)
    usable, modes = convert_all(scan, args)
    kept, dropped = drop_classes(scan, usable, args.min_images_per_class)
    if len(kept) < 2:
        detail = "; ".join(f"{d['name']}: {d['reason']}" for d in dropped)
        raise DatasetError(f"need at least 2 classes with usable images, found {len(kept)} ({', '.join(kept) or '-'}) "
                           f"in {args.input_dir}" + (f"; dropped {detail}" if detail else ""))
    assigned, carved = assign_splits(scan, usable, kept, args)
    for split, by_class in assigned.items():
        for cls, items in by_class.items():
            if items:
                (args.output_dir / split / cls).mkdir(parents=True, exist_ok=True)
            for cand, name in items:
                os.replace(cand.staged.parent / name, args.output_dir / split / cls / name)
    counts = {split: {cls: len(assigned[split][cls]) for cls in kept} for split in SPLITS}
    return {
        "classes": kept,
        "num_classes": len(kept),
        "counts": counts,
        "totals": {split: sum(counts[split].values()) for split in SPLITS},
        "skipped": sorted(scan.skipped, key=lambda item: item["path"]),
        "dropped_classes": dropped,
        "source_layout": scan.layout,
        "split_folders": scan.split_folders,
        "carved_from_train": carved if scan.layout == "presplit" else [],
        "source_archives": archives,
        "source_modes": dict(sorted(modes.items())),
        "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
        "output_format": "upright RGB JPEGs that need no shrinking copied as they are; other images not shrunk: "
                         "PNG (lossless); shrunk: JPEG quality 95 from JPEG sources or over 1 MP, else PNG; all RGB",
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.output_dir
    work = out / WORK_DIR_NAME
    try:
        manifest = prepare(args, work)
    except DatasetError as exc:
        print(f"preprocess: error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / "report").mkdir(parents=True, exist_ok=True)
    (out / "report" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    totals = manifest["totals"]
    print(f"preprocess: {manifest['num_classes']} classes ({manifest['source_layout']}): train {totals['train']}, "
          f"validation {totals['validation']}, test {totals['test']}; files skipped: {len(manifest['skipped'])}"
          + (f" ({reason_kinds(manifest['skipped'])})" if manifest["skipped"] else "")
          + f"; classes dropped: {len(manifest['dropped_classes'])}; manifest {out / 'report' / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
