"""scripts/preprocess.py (and its archive helper scripts/safe_extract.py): units, then the script end to end."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import preprocess
import pytest
import safe_extract
from PIL import Image
from test_rgb_conversion import half_transparent_rgba, palette_with_transparency

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "preprocess.py"
DOG_CLASSES = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]


# ---------------------------------------------------------------- helpers that build real (and broken) images


def jpeg_bytes(size: tuple[int, int] = (40, 30), seed: int = 0, mode: str = "RGB") -> bytes:
    # Noise, so a JPEG has enough entropy-coded data to be cut in half meaningfully.
    img = Image.effect_noise(size, 40 + seed).convert(mode) if mode != "RGB" else Image.merge(
        "RGB", [Image.effect_noise(size, 30 + seed + k) for k in range(3)])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png() -> bytes:
    """A 57-byte PNG whose header claims 100,000 x 100,000 pixels: the cheap decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def save_png(img: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "PNG")
    return path


def folder_per_class(root: Path, classes: dict[str, int], size: tuple[int, int] = (40, 30)) -> Path:
    for c, (name, n) in enumerate(classes.items()):
        for i in range(n):
            write(root / name / f"img{i:02d}.jpg", jpeg_bytes(size, seed=c * 10 + i))
    return root


def dog_tree(root: Path) -> Path:
    """dogImages/{train,valid,test}/<class>/ like the Udacity dog-breed set, a few images a class."""
    for c, cls in enumerate(DOG_CLASSES):
        for split, n in (("train", 4), ("valid", 1), ("test", 1)):
            for i in range(n):
                write(root / "dogImages" / split / cls / f"{cls[4:]}_{i:05d}.jpg", jpeg_bytes(seed=c * 7 + i))
    return root


def run_script(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def load_manifest(out: Path) -> dict:
    return json.loads((out / "report" / "manifest.json").read_text())


def listing(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and "report" not in p.parts)


def reasons(manifest: dict) -> dict[str, str]:
    return {item["path"]: item["reason"] for item in manifest["skipped"]}


# ---------------------------------------------------------------- split


@pytest.mark.parametrize(
    ("n", "val", "test", "expected"),
    [
        (0, 0.1, 0.1, (0, 0, 0)),
        (1, 0.1, 0.1, (1, 0, 0)),
        (2, 0.1, 0.1, (2, 0, 0)),
        (3, 0.1, 0.1, (1, 1, 1)),  # 3 is enough for one image in every split
        (10, 0.1, 0.1, (8, 1, 1)),
        (30, 0.1, 0.1, (24, 3, 3)),
        (25, 0.1, 0.1, (19, 3, 3)),  # 2.5 rounds half up
        (10, 0.45, 0.45, (1, 4, 5)),  # training keeps one image whatever the fractions
        (2, 0.5, 0.4, (1, 0, 1)),
        (5, 0.2, 0.0, (4, 1, 0)),  # a zero fraction gets nothing, even for a big class
    ],
)
def test_split_counts(n: int, val: float, test: float, expected: tuple[int, int, int]) -> None:
    assert preprocess.split_counts(n, val, test) == expected


def test_stratified_split_is_stratified_complete_and_deterministic() -> None:
    items = {"a": [f"a{i}" for i in range(30)], "b": [f"b{i}" for i in range(10)], "c": ["c0", "c1"]}
    first = preprocess.stratified_split(items, 0.1, 0.2, seed=7)
    assert first == preprocess.stratified_split({k: list(reversed(v)) for k, v in items.items()}, 0.1, 0.2, seed=7)
    assert {split: {c: len(v) for c, v in by_class.items()} for split, by_class in first.items()} == {
        "train": {"a": 21, "b": 7, "c": 2}, "validation": {"a": 3, "b": 1, "c": 0}, "test": {"a": 6, "b": 2, "c": 0}}
    for cls, members in items.items():
        together = sorted(first["train"][cls] + first["validation"][cls] + first["test"][cls])
        assert together == sorted(members)  # every item exactly once, never in another class
    assert preprocess.stratified_split(items, 0.1, 0.2, seed=8) != first
    # A class's split does not depend on which other classes exist.
    assert preprocess.stratified_split({"a": items["a"]}, 0.1, 0.2, seed=7)["test"]["a"] == first["test"]["a"]


def test_output_format_rule() -> None:
    # Not shrunk: lossless, so training sees what the endpoint makes of the original (test_rgb_conversion.py).
    assert preprocess.output_format("JPEG", (10, 10), shrunk=False) == "PNG"
    assert preprocess.output_format("PNG", (2000, 1000), shrunk=False) == "PNG"
    # Shrunk: the pixels changed anyway; a lossy photo or a big image stays small.
    assert preprocess.output_format("JPEG", (10, 10), shrunk=True) == "JPEG"
    assert preprocess.output_format("PNG", (32, 32), shrunk=True) == "PNG"
    assert preprocess.output_format("PNG", (2000, 1000), shrunk=True) == "JPEG"  # a big lossless photo bloats S3
    assert preprocess.kept_as_is("JPEG", "RGB", orientation=1, shrunk=False)
    assert not preprocess.kept_as_is("JPEG", "RGB", orientation=6, shrunk=False)
    assert not preprocess.kept_as_is("JPEG", "CMYK", orientation=1, shrunk=False)
    assert not preprocess.kept_as_is("JPEG", "RGB", orientation=1, shrunk=True)
    assert not preprocess.kept_as_is("PNG", "RGB", orientation=1, shrunk=False)


def test_process_image_treats_the_bomb_warning_as_an_error(tmp_path: Path) -> None:
    src = save_png(Image.new("RGB", (30, 30)), tmp_path / "a.png")  # 900 px: over 500, under Pillow's 2x error
    name, reason, _ = preprocess.process_image((str(src), str(tmp_path / "out"), 0, 500))
    assert name is None and reason.startswith("decompression bomb: ")


def test_output_stems_flatten_and_never_clash() -> None:
    assert preprocess.output_stems(["a.jpg", "a.png", "a-2.jpg", "sub/a.jpg", "b.jpeg"]) == [
        "a", "a-2", "a-2-2", "sub_a", "b"]


# ---------------------------------------------------------------- archive member safety


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("dogImages/train/x.jpg", None),
        ("./a/b.png", None),
        ("a/..b/c.png", None),
        ("../evil.png", "a path with '..'"),
        ("a/../../evil.png", "a path with '..'"),
        ("a\\..\\..\\evil.png", "a path with '..'"),
        ("/etc/evil.png", "an absolute path"),
        ("\\evil.png", "an absolute path"),
        ("C:/evil.png", "an absolute path"),
    ],
)
def test_member_problem(name: str, problem: str | None) -> None:
    found = safe_extract.member_problem(name)
    assert (found is None) if problem is None else found.startswith(problem)


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (tarfile.SYMTYPE, "member 'a/link.jpg' is a symbolic link (to '/etc/passwd')"),
        (tarfile.LNKTYPE, "member 'a/link.jpg' is a hard link (to '/etc/passwd')"),
        (tarfile.FIFOTYPE, "member 'a/link.jpg' is a special file (device, FIFO or unknown type)"),
    ],
)
def test_tar_links_and_special_files_are_refused(tmp_path: Path, kind: bytes, message: str) -> None:
    member = tarfile.TarInfo("a/link.jpg")
    member.type, member.linkname = kind, "/etc/passwd"
    with pytest.raises(safe_extract.ArchiveError) as err:
        safe_extract.extract_archive(_tar_with(tmp_path, member), tmp_path / "dest")
    assert str(err.value) == f"refusing to extract bad.tar.gz: {message}"
    assert not any((tmp_path / "dest").iterdir())


def test_tar_absolute_member_and_size_cap(tmp_path: Path) -> None:
    member = tarfile.TarInfo("/tmp/evil.png")
    member.size = 3
    with pytest.raises(safe_extract.ArchiveError, match="member '/tmp/evil.png' is an absolute path"):
        safe_extract.extract_archive(_tar_with(tmp_path, member, b"abc"), tmp_path / "dest")
    ok = tarfile.TarInfo("x/y.bin")
    ok.size = 1000
    with pytest.raises(safe_extract.ArchiveError, match="unpack to 1,000 bytes, over the 999-byte cap"):
        safe_extract.extract_archive(_tar_with(tmp_path, ok, b"0" * 1000), tmp_path / "dest", max_bytes=999)
    assert safe_extract.extract_archive(_tar_with(tmp_path, ok, b"0" * 1000), tmp_path / "dest") == 1000
    assert (tmp_path / "dest" / "x" / "y.bin").stat().st_size == 1000


def test_zip_size_cap_and_corrupt_archive(tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/zeros.bin", b"\0" * 100_000)  # compresses to ~100 bytes: the cap counts unpacked bytes
    with pytest.raises(safe_extract.ArchiveError, match="over the 50,000-byte cap"):
        safe_extract.extract_archive(path, tmp_path / "dest", max_bytes=50_000)
    write(tmp_path / "broken.zip", b"PK\3\4 not really a zip")
    with pytest.raises(safe_extract.ArchiveError, match="^cannot extract broken.zip: "):
        safe_extract.extract_archive(tmp_path / "broken.zip", tmp_path / "dest")


# ---------------------------------------------------------------- end to end


def test_digits_folder_per_class_end_to_end(small_digits_dir: Path, tmp_path: Path) -> None:
    result = run_script("--input-dir", small_digits_dir, "--output-dir", tmp_path / "out", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "10 classes (folder-per-class): train 240, validation 30, test 30" in result.stdout
    manifest = load_manifest(tmp_path / "out")
    assert manifest["classes"] == sorted(p.name for p in small_digits_dir.iterdir() if p.is_dir())
    assert manifest["source_layout"] == "folder-per-class"
    assert manifest["totals"] == {"train": 240, "validation": 30, "test": 30}
    assert all(manifest["counts"][s] == {c: n for c in manifest["classes"]}
               for s, n in (("train", 24), ("validation", 3), ("test", 3)))
    assert manifest["skipped"] == [{"path": ".sample-data-complete", "reason": "hidden file"}]
    files = listing(tmp_path / "out")
    assert len(files) == 300 and all(f.endswith(".png") for f in files)
    with Image.open(tmp_path / "out" / files[0]) as img:
        assert img.mode == "RGB" and img.size == (32, 32)
    # Same seed, same split, whatever the worker count; another seed, another split.
    again = run_script("--input-dir", small_digits_dir, "--output-dir", tmp_path / "again", "--workers", "1")
    assert again.returncode == 0 and listing(tmp_path / "again") == files
    other = run_script("--input-dir", small_digits_dir, "--output-dir", tmp_path / "other", "--seed", "1")
    assert other.returncode == 0
    assert listing(tmp_path / "other") != files


@pytest.fixture
def messy_dog_tree(tmp_path: Path) -> Path:
    """The dog-breed layout with every kind of broken and odd file mixed into one class."""
    root = dog_tree(tmp_path / "in")
    cls = root / "dogImages" / "train" / DOG_CLASSES[0]
    write(cls / "zero.jpg", b"")
    good = jpeg_bytes((64, 64), seed=99)
    write(cls / "truncated.jpg", good[: len(good) // 2])
    write(cls / "notes.jpg", b"this is a text file, not a jpeg\n")
    write(cls / ".DS_Store", b"\0\0\0\1Bud1")
    write(cls / "bomb.png", bomb_png())
    write(cls / "cmyk.jpg", jpeg_bytes(mode="CMYK"))
    save_png(Image.new("I;16", (10, 10), 40000), cls / "deep.png")
    save_png(palette_with_transparency(), cls / "palette.png")
    save_png(half_transparent_rgba(), cls / "rgba.png")
    write(root / "dogImages" / "valid" / "004.Akita" / "Akita_00001.jpg", jpeg_bytes(seed=5))  # no training images
    write(root / "dogImages" / "LICENSE.txt", b"CC\n")
    return root


def test_presplit_dog_tree_with_broken_and_odd_files(messy_dog_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_script("--input-dir", messy_dog_tree, "--output-dir", out)
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(out)
    assert manifest["source_layout"] == "presplit"
    assert manifest["split_folders"] == {"test": "test", "train": "train", "validation": "valid"}
    assert manifest["classes"] == DOG_CLASSES
    assert manifest["counts"]["train"] == {DOG_CLASSES[0]: 8, DOG_CLASSES[1]: 4, DOG_CLASSES[2]: 4}
    assert manifest["totals"] == {"train": 16, "validation": 3, "test": 3}
    assert manifest["dropped_classes"] == [
        {"name": "004.Akita", "reason": "no usable training images (only in validation/test)", "images": 1}]
    prefix = f"dogImages/train/{DOG_CLASSES[0]}/"
    skipped = reasons(manifest)
    assert skipped[prefix + "zero.jpg"] == "empty file (0 bytes)"
    assert skipped[prefix + "truncated.jpg"].startswith("undecodable image: OSError: image file is truncated")
    assert skipped[prefix + "notes.jpg"] == "not an image (Pillow cannot identify the format)"
    assert skipped[prefix + ".DS_Store"] == "hidden file"
    assert skipped[prefix + "bomb.png"].startswith("decompression bomb: Image size (10000000000 pixels) exceeds")
    assert skipped["dogImages/LICENSE.txt"] == "not inside a class folder"
    assert len(skipped) == 6
    converted = out / "train" / DOG_CLASSES[0]
    # A CMYK JPEG is converted, so it is written lossless (PNG): training sees what serving makes of the original.
    for name, pixel in (("cmyk.png", None), ("deep.png", (155, 155, 155)), ("palette.png", (255, 255, 255)),
                        ("rgba.png", (255, 255, 255))):
        with Image.open(converted / name) as img:
            assert img.mode == "RGB", name
            assert pixel is None or img.getpixel((1, 1)) == pixel, name
    assert manifest["source_modes"] == {"CMYK": 1, "I;16": 1, "P": 1, "RGB": 19, "RGBA": 1}
    assert sorted(p.name for p in (out / "validation").iterdir()) == DOG_CLASSES  # Akita's image was not written
    assert ("preprocess: 3 classes (presplit): train 16, validation 3, test 3; files skipped: 6 (1 not inside a class "
            "folder, 1 hidden file, 1 decompression bomb, 1 not an image, 1 undecodable image, 1 empty file); classes "
            "dropped: 1") in result.stdout


def test_presplit_without_validation_carves_it_from_train(tmp_path: Path) -> None:
    root = dog_tree(tmp_path / "in")
    shutil.rmtree(root / "dogImages" / "valid")
    result = run_script("--input-dir", root, "--output-dir", tmp_path / "out", "--val-fraction", "0.25")
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(tmp_path / "out")
    assert manifest["carved_from_train"] == ["validation"]
    assert manifest["totals"] == {"train": 9, "validation": 3, "test": 3}


def test_max_image_side_shrinks_keeping_aspect_ratio(tmp_path: Path) -> None:
    root = folder_per_class(tmp_path / "in", {"cats": 3, "dogs": 3}, size=(400, 300))
    result = run_script("--input-dir", root, "--output-dir", tmp_path / "out", "--max-image-side", "64")
    assert result.returncode == 0, result.stderr
    files = listing(tmp_path / "out")
    assert len(files) == 6
    for rel in files:
        with Image.open(tmp_path / "out" / rel) as img:
            assert img.size == (64, 48) and img.format == "JPEG"


def _zip_tree(folder: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(folder.rglob("*")):
            zf.write(file, file.relative_to(folder).as_posix())
    return path


def test_zip_and_tar_gz_archives(tmp_path: Path) -> None:
    classes = folder_per_class(tmp_path / "raw", {"cats": 5, "dogs": 5})
    (tmp_path / "zipped").mkdir()
    _zip_tree(classes, tmp_path / "zipped" / "pets.zip")
    result = run_script("--input-dir", tmp_path / "zipped", "--output-dir", tmp_path / "out1")
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(tmp_path / "out1")
    assert manifest["source_archives"] == ["pets.zip"] and manifest["classes"] == ["cats", "dogs"]
    assert manifest["totals"] == {"train": 6, "validation": 2, "test": 2}
    assert not (tmp_path / "out1" / preprocess.WORK_DIR_NAME).exists()

    dogs = dog_tree(tmp_path / "dogs")
    (tmp_path / "tarred").mkdir()
    with tarfile.open(tmp_path / "tarred" / "dogImages.tar.gz", "w:gz") as tf:
        tf.add(dogs / "dogImages", arcname="dogImages")
    result = run_script("--input-dir", tmp_path / "tarred", "--output-dir", tmp_path / "out2")
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(tmp_path / "out2")
    assert manifest["source_layout"] == "presplit" and manifest["classes"] == DOG_CLASSES
    assert manifest["totals"] == {"train": 12, "validation": 3, "test": 3}


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        ("../evil.png", "a path with '..' that would be written outside the extraction folder (zip-slip)"),
        ("/tmp/evil.png", "an absolute path"),
    ],
)
def test_hostile_zip_stops_with_a_clear_message(tmp_path: Path, member: str, problem: str) -> None:
    (tmp_path / "in").mkdir()
    with zipfile.ZipFile(tmp_path / "in" / "data.zip", "w") as zf:
        zf.writestr("cats/a.jpg", jpeg_bytes())
        zf.writestr(zipfile.ZipInfo(member), jpeg_bytes())
    result = run_script("--input-dir", tmp_path / "in", "--output-dir", tmp_path / "out" / "o")
    assert result.returncode == 2
    assert result.stderr == (f"preprocess: error: refusing to extract data.zip: member {member!r} is {problem} "
                             f"(in {tmp_path / 'in'})\n")
    assert not (tmp_path / "out" / "evil.png").exists() and not list((tmp_path / "out" / "o").iterdir())


# ---------------------------------------------------------------- unusable datasets: exit 2, one clear message


def run_main(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str]:
    code = preprocess.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("preprocess: error: ") and "Traceback" not in err
    return code, err.removeprefix("preprocess: error: ").strip()


def test_missing_input_dir_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    result = run_script("--input-dir", tmp_path / "nope", "--output-dir", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr == (f"preprocess: error: input directory {tmp_path / 'nope'} does not exist "
                             "(or is not a directory)\n")


def test_empty_input_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "in").mkdir()
    code, message = run_main(capsys, "--input-dir", tmp_path / "in", "--output-dir", tmp_path / "out")
    assert code == 2 and message.startswith(f"input directory {tmp_path / 'in'} is empty")


def test_no_decodable_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write(tmp_path / "in" / "a" / "x.jpg", b"")
    write(tmp_path / "in" / "b" / "y.jpg", b"text")
    code, message = run_main(capsys, "--input-dir", tmp_path / "in", "--output-dir", tmp_path / "out")
    assert code == 2
    assert message == (f"no usable images in {tmp_path / 'in'}: 2 files looked at, none decodable "
                       "(1 empty file, 1 not an image)")


def test_one_class_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = folder_per_class(tmp_path / "in", {"cats": 5, "dogs": 1})
    code, message = run_main(capsys, "--input-dir", root, "--output-dir", tmp_path / "out")
    assert code == 2
    assert message == (f"need at least 2 classes with usable images, found 1 (cats) in {root}; dropped dogs: only 1 "
                       "usable image(s), fewer than --min-images-per-class 3")


@pytest.mark.parametrize(
    ("val", "test", "message"),
    [
        ("0.6", "0.5", "bad fractions: --val-fraction 0.6 + --test-fraction 0.5 = 1.1 leaves nothing for training; "
                       "the sum must be below 1"),
        ("0", "0.1", "bad fractions: --val-fraction must be between 0 and 1 (exclusive), got 0.0"),
        ("0.1", "1", "bad fractions: --test-fraction must be between 0 and 1 (exclusive), got 1.0"),
    ],
)
def test_bad_fractions(tmp_path: Path, capsys: pytest.CaptureFixture, val: str, test: str, message: str) -> None:
    code, err = run_main(capsys, "--input-dir", tmp_path, "--output-dir", tmp_path / "out", "--val-fraction", val,
                         "--test-fraction", test)
    assert code == 2 and err == message


def test_classes_too_small_leave_a_split_empty(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = folder_per_class(tmp_path / "in", {"cats": 2, "dogs": 2})
    code, message = run_main(capsys, "--input-dir", root, "--output-dir", tmp_path / "out",
                             "--min-images-per-class", "1")
    assert code == 2
    assert message == ("the validation split is empty after splitting 4 usable images of 2 classes (--val-fraction "
                       "0.1, --test-fraction 0.1): every class is too small; each class needs 3 or more images to "
                       "reach every split")
    assert not (tmp_path / "out" / "train").exists()


def test_presplit_test_folder_with_only_broken_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = dog_tree(tmp_path / "in")
    for path in (root / "dogImages" / "test").rglob("*.jpg"):
        path.write_bytes(b"")
    code, message = run_main(capsys, "--input-dir", root, "--output-dir", tmp_path / "out")
    assert code == 2 and message == "the test split is empty: test/ has no usable images of the kept classes"


def test_split_folders_without_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write(tmp_path / "in" / "valid" / "cats" / "a.jpg", jpeg_bytes())
    write(tmp_path / "in" / "test" / "cats" / "a.jpg", jpeg_bytes())
    code, message = run_main(capsys, "--input-dir", tmp_path / "in", "--output-dir", tmp_path / "out")
    assert code == 2
    assert message == (f"{tmp_path / 'in'} has test/, valid/ but no train/ folder: give train/ (plus valid/ and "
                       "test/) or one folder per class")


def test_overlapping_input_and_output_are_refused_before_anything_is_deleted(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    data = dog_tree(tmp_path / "in") / "dogImages"
    code, message = run_main(capsys, "--input-dir", data, "--output-dir", data)  # would clear data/train
    assert code == 2 and message == f"--output-dir {data} and --input-dir {data} overlap; use separate folders"
    assert len(list((data / "train").rglob("*.jpg"))) == 12
    code, message = run_main(capsys, "--input-dir", data / "train", "--output-dir", data)
    assert code == 2 and message.endswith("overlap; use separate folders")



def test_the_script_alone_finds_the_modules_the_definition_ships(tmp_path: Path) -> None:
    """As in a SageMaker processing job: only preprocess.py in the code folder, each module in the folder its
    ProcessingInput names (steps/prepare_data.py)."""
    from steps.prepare_data import MODULES_ROOT, PREPROCESS_MODULES

    base = tmp_path / "opt-ml"
    code = write(tmp_path / "code" / "preprocess.py", SCRIPT.read_bytes())
    for module in PREPROCESS_MODULES:
        destination = f"{MODULES_ROOT}/{module}".replace("/opt/ml", str(base), 1)
        write(Path(destination) / f"{module}.py", (SCRIPT.parent / f"{module}.py").read_bytes())
    data = folder_per_class(tmp_path / "in", {"cats": 4, "dogs": 4})
    done = subprocess.run([sys.executable, "-I", str(code), "--input-dir", str(data), "--output-dir",
                           str(tmp_path / "out")], env={"SAGEMAKER_BASE_DIR": str(base), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert load_manifest(tmp_path / "out")["classes"] == ["cats", "dogs"]
