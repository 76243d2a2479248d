"""Tests of the loaders for real on-disk datasets: each test writes tiny files in the
dataset's own layout into `tmp_path` (PNG/JPEG class folders, DRIVE .tif/.gif, MedMNIST
.npz, DICOM, NIfTI), reads them back and checks values exactly, shapes and dtypes; then the
errors for bad input, the stratified split and the device-side augmenting loader.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

from medimg.data._image_io import read_image, read_mask, unit_window
from medimg.data.drive import DRIVEDataset
from medimg.data.image_folder import ImageFolderDataset
from medimg.data.loader import DeviceAugmentLoader
from medimg.data.medmnist import MedMNISTDataset
from medimg.data.split import split
from medimg.transforms import Compose, RandomAffine, RandomGamma


def pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 image with every value distinct from its neighbours (a known pixel pattern)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def expected01(array: np.ndarray, scale: float = 255.0) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32)) / scale


# --------------------------------------------------------------------------- one image file


def test_read_image_gray_png_exact(tmp_path):
    a = pattern(9, 13)
    image = read_image(save(tmp_path / "a.png", a))
    assert image.shape == (1, 9, 13) and image.dtype == torch.float32
    torch.testing.assert_close(image[0], expected01(a), rtol=0, atol=0)
    rgb = read_image(tmp_path / "a.png", channels=3)  # grayscale repeated
    assert rgb.shape == (3, 9, 13) and all(torch.equal(rgb[c], image[0]) for c in range(3))


def test_read_image_rgb_png_exact_and_luma(tmp_path):
    a = np.stack([pattern(6, 7, s) for s in (1, 2, 3)], axis=-1)
    path = save(tmp_path / "c.png", a)
    rgb = read_image(path, channels=3)
    torch.testing.assert_close(rgb, expected01(a).permute(2, 0, 1), rtol=0, atol=0)
    gray = read_image(path, channels=1)
    luma = np.asarray(Image.fromarray(a).convert("L"))  # ITU-R 601-2, as documented
    torch.testing.assert_close(gray[0], expected01(luma), rtol=0, atol=0)


def test_read_image_16bit_png_divides_by_65535(tmp_path):
    a = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000 + 7)
    path = save(tmp_path / "deep.png", a)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    image = read_image(path)
    torch.testing.assert_close(image[0], expected01(a, 65535.0), rtol=0, atol=0)
    assert read_image(path, channels=3).shape == (3, 4, 5)


def test_read_image_float_tiff_is_min_max_scaled(tmp_path):
    a = np.array([[-2.0, 0.0], [2.0, 6.0]], dtype=np.float32)
    image = read_image(save(tmp_path / "f.tif", a))
    torch.testing.assert_close(image[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))


def test_read_image_jpeg_and_resize(tmp_path):
    path = save(tmp_path / "x.jpg", np.full((16, 24, 3), 128, np.uint8))
    image = read_image(path, size=(8, 12))
    assert image.shape == (1, 8, 12) and image.dtype == torch.float32
    torch.testing.assert_close(image, torch.full((1, 8, 12), 128 / 255), rtol=0, atol=2 / 255)
    assert read_image(path, channels=3, size=5).shape == (3, 5, 5)


def test_read_mask_gif_values_and_nearest_resize(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    labels[2:6, 1:4] = 255
    labels[0, :] = 128
    path = save(tmp_path / "m.gif", labels)
    mask = read_mask(path)
    assert mask.dtype == torch.int64 and torch.equal(mask, torch.from_numpy(labels.astype(np.int64)))
    small = read_mask(path, size=(4, 5))
    assert small.shape == (4, 5) and set(small.unique().tolist()) <= {0, 128, 255}


def test_read_image_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        read_image(missing)
    bad = truncate(save(tmp_path / "half.png", pattern(64, 64)))
    with pytest.raises(ValueError, match=r"half\.png: cannot read image"):
        read_image(bad)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png: cannot read image"):
        read_image(text)
    good = save(tmp_path / "ok.png", pattern(4, 4))
    with pytest.raises(ValueError, match="channels"):
        read_image(good, channels=2)
    with pytest.raises(ValueError, match="size"):
        read_image(good, size=(0, 4))


def test_unit_window_arithmetic():
    v = np.array([-10.0, 0.0, 5.0, 10.0, 30.0])
    np.testing.assert_allclose(unit_window(v, 0.0, 20.0), [0.0, 0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(unit_window(v), (v + 10) / 40)
    np.testing.assert_array_equal(unit_window(np.full(3, 7.0)), np.zeros(3))


# --------------------------------------------------------------------------- class folders


def brain_mri(root: Path) -> dict[str, np.ndarray]:
    """The Kaggle brain MRI layout: root/yes, root/no, mixed extensions and modes."""
    files = {
        "no/1 no.jpeg": np.full((10, 12), 60, np.uint8),
        "no/N2.PNG": pattern(10, 12, 1),
        "yes/Y1.png": pattern(10, 12, 2),
        "yes/Y2.png": np.stack([pattern(10, 12, s) for s in (3, 4, 5)], -1),
        "yes/Y3.JPG": np.full((10, 12, 3), 200, np.uint8),
    }
    for name, array in files.items():
        save(root / name, array)
    (root / "yes" / ".DS_Store").write_bytes(b"\0\1junk")
    (root / "yes" / "._Y1.png").write_bytes(b"macOS resource fork")
    (root / "no" / "readme.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return files


def test_image_folder_brain_mri_layout(tmp_path):
    files = brain_mri(tmp_path)
    ds = ImageFolderDataset(tmp_path)
    assert ds.classes == ["no", "yes"] and ds.class_to_index == {"no": 0, "yes": 1}
    assert ds.counts == {"no": 2, "yes": 3} and len(ds) == 5
    assert [Path(p).name for p, _ in ds.samples] == ["1 no.jpeg", "N2.PNG", "Y1.png", "Y2.png", "Y3.JPG"]
    assert ds.targets == [0, 0, 1, 1, 1]
    item = ds[2]
    assert set(item) == {"image", "label", "path"} and item["path"].endswith("Y1.png")
    assert item["label"].dtype == torch.int64 and item["label"].shape == () and item["label"].item() == 1
    torch.testing.assert_close(item["image"][0], expected01(files["yes/Y1.png"]), rtol=0, atol=0)
    rgb = ImageFolderDataset(tmp_path, channels=3)[3]["image"]
    torch.testing.assert_close(rgb, expected01(files["yes/Y2.png"]).permute(2, 0, 1), rtol=0, atol=0)
    text = ds.summary()
    assert "no" in text and "yes" in text and "5 images" in text and " 2 " in text and " 3 " in text


def test_image_folder_chest_xray_layout_batches(tmp_path):
    train = tmp_path / "chest_xray" / "train"
    for i in range(3):
        save(train / "NORMAL" / f"IM-{i:04d}.jpeg", np.full((20 + i, 30), 100, np.uint8))
    for i in range(5):
        save(train / "PNEUMONIA" / f"person{i}_bacteria_{i}.jpeg", np.full((25, 18 + i, 3), 50, np.uint8))
    save(train / "PNEUMONIA" / "nested" / "extra.jpeg", np.zeros((4, 4), np.uint8))  # searched recursively
    (tmp_path / "chest_xray" / "__MACOSX").mkdir()
    ds = ImageFolderDataset(train, size=16)
    assert ds.classes == ["NORMAL", "PNEUMONIA"] and ds.counts == {"NORMAL": 3, "PNEUMONIA": 6}
    batch = next(iter(DataLoader(ds, batch_size=9)))
    assert batch["image"].shape == (9, 1, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["label"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1] and len(batch["path"]) == 9
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0
    flipped = ImageFolderDataset(train, size=(16, 8), transform=lambda x: 1.0 - x)[0]["image"]
    assert flipped.shape == (1, 16, 8)
    torch.testing.assert_close(flipped, torch.full((1, 16, 8), 1 - 100 / 255), rtol=0, atol=2 / 255)


def test_image_folder_16bit_png(tmp_path):
    a = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    save(tmp_path / "ct" / "a.png", a)
    image = ImageFolderDataset(tmp_path)[0]["image"]
    torch.testing.assert_close(image[0], expected01(a, 65535.0), rtol=0, atol=0)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_root"):
        ImageFolderDataset(tmp_path / "missing_root")
    save(tmp_path / "flat" / "a.png", pattern(4, 4))
    with pytest.raises(ValueError, match="no class folders"):
        ImageFolderDataset(tmp_path / "flat")
    with pytest.raises(NotADirectoryError, match=r"a\.png"):
        ImageFolderDataset(tmp_path / "flat" / "a.png")
    save(tmp_path / "two" / "yes" / "a.png", pattern(4, 4))
    (tmp_path / "two" / "no").mkdir()
    (tmp_path / "two" / "no" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"class folder .*two[/\\]no"):
        ImageFolderDataset(tmp_path / "two")
    with pytest.raises(ValueError, match="channels"):
        ImageFolderDataset(tmp_path / "two", channels=4)


def test_image_folder_truncated_file(tmp_path, caplog):
    save(tmp_path / "no" / "n1.png", pattern(8, 8, 1))
    save(tmp_path / "yes" / "y1.png", pattern(8, 8, 2))
    bad = truncate(save(tmp_path / "yes" / "y2.png", pattern(64, 64, 3)))
    ds = ImageFolderDataset(tmp_path)
    assert ds.counts == {"no": 1, "yes": 2}
    with pytest.raises(ValueError, match=r"y2\.png: cannot read image"):
        ds[2]
    with caplog.at_level(logging.WARNING, logger="medimg.data"):
        ds = ImageFolderDataset(tmp_path, skip_bad=True)
    assert ds.counts == {"no": 1, "yes": 1} and ds.skipped == [str(bad)]
    assert any("y2.png" in r.getMessage() and r.name == "medimg.data" for r in caplog.records)
    assert [Path(p).name for p, _ in ds.samples] == ["n1.png", "y1.png"]
    assert "skipped 1" in ds.summary()
    truncate(tmp_path / "no" / "n1.png")
    with pytest.raises(ValueError, match=r"none of its image files"):
        ImageFolderDataset(tmp_path, skip_bad=True)


# --------------------------------------------------------------------------- DRIVE


def drive(root: Path, split: str = "training", ids: tuple[str, ...] = ("21", "22"), h: int = 20, w: int = 24,
          image_equals_manual: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """DRIVE layout with RGB .tif images and .gif annotations / field-of-view masks."""
    out = {}
    for i, sample_id in enumerate(ids):
        rgb = np.stack([pattern(h, w, 10 * i + c) for c in range(3)], -1)
        vessels = (pattern(h, w, 100 + i) > 140).astype(np.uint8) * 255
        fov = np.zeros((h, w), np.uint8)
        fov[2:-2, 3:-3] = 255
        if image_equals_manual:
            rgb[..., 1] = vessels
            fov = vessels
        save(root / split / "images" / f"{sample_id}_{split}.tif", rgb)
        save(root / split / "1st_manual" / f"{sample_id}_manual1.gif", vessels)
        save(root / split / "mask" / f"{sample_id}_{split}_mask.gif", fov)
        out[sample_id] = {"rgb": rgb, "vessels": vessels, "fov": fov}
    return out


def test_drive_layout_exact(tmp_path):
    files = drive(tmp_path)
    ds = DRIVEDataset(tmp_path, split="training")
    assert len(ds) == 2
    s = ds[1]
    assert s["id"] == "22" and set(s) == {"image", "mask", "fov", "id"}
    ref = files["22"]
    torch.testing.assert_close(s["image"], expected01(ref["rgb"]).permute(2, 0, 1), rtol=0, atol=0)
    assert s["mask"].dtype == torch.int64 and s["mask"].shape == (20, 24)
    assert torch.equal(s["mask"], torch.from_numpy(ref["vessels"] > 0).long())
    assert s["fov"].dtype == torch.bool and torch.equal(s["fov"], torch.from_numpy(ref["fov"] > 0))
    green = DRIVEDataset(tmp_path, channels=1)[1]["image"]
    torch.testing.assert_close(green, expected01(ref["rgb"][..., 1])[None], rtol=0, atol=0)
    small = DRIVEDataset(tmp_path, size=(10, 12))[0]
    assert small["image"].shape == (3, 10, 12) and small["mask"].shape == (10, 12) and small["fov"].shape == (10, 12)
    assert set(small["mask"].unique().tolist()) <= {0, 1}


def test_drive_missing_manual(tmp_path):
    drive(tmp_path, split="test", ids=("01", "02"))
    manual = tmp_path / "test" / "1st_manual" / "02_manual1.gif"
    manual.unlink()
    with pytest.raises(FileNotFoundError, match=r"02_manual1\.gif"):
        DRIVEDataset(tmp_path, split="test")
    ds = DRIVEDataset(tmp_path, split="test", require_manual=False)
    assert "mask" in ds[0] and "mask" not in ds[1] and ds[1]["fov"].dtype == torch.bool


def test_drive_mask_size_mismatch_names_both_files(tmp_path, caplog):
    drive(tmp_path, ids=("21", "22", "23"))
    save(tmp_path / "training" / "1st_manual" / "22_manual1.gif", np.zeros((19, 24), np.uint8))
    ds = DRIVEDataset(tmp_path)
    with pytest.raises(ValueError, match=r"22_manual1\.gif.*\(19, 24\).*22_training\.tif.*\(20, 24\)"):
        ds[1]
    assert ds[0]["mask"].shape == (20, 24)
    with caplog.at_level(logging.WARNING, logger="medimg.data"):
        ds = DRIVEDataset(tmp_path, skip_bad=True)
    assert [ds[i]["id"] for i in range(len(ds))] == ["21", "23"]
    assert any("22" in r.getMessage() for r in caplog.records)


def test_drive_errors(tmp_path):
    with pytest.raises(ValueError, match="split"):
        DRIVEDataset(tmp_path, split="train")
    with pytest.raises(FileNotFoundError, match="images"):
        DRIVEDataset(tmp_path)
    drive(tmp_path)
    (tmp_path / "training" / "mask" / "21_training_mask.gif").unlink()
    with pytest.raises(FileNotFoundError, match=r"21_training_mask\.gif"):
        DRIVEDataset(tmp_path)


# --------------------------------------------------------------------------- MedMNIST


def medmnist(path: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> Path:
    arrays = {f"{s}_images": a for s, a in images.items()} | {f"{s}_labels": a for s, a in labels.items()}
    np.savez(path, **arrays)
    return path


def test_medmnist_gray_single_label(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 6), ("val", 2), ("test", 3))}
    labs = {s: rng.integers(0, 4, (len(a), 1)).astype(np.uint8) for s, a in imgs.items()}
    path = medmnist(tmp_path / "organamnist.npz", imgs, labs)
    for split_name in ("train", "val", "test"):
        ds = MedMNISTDataset(path, split=split_name)
        assert len(ds) == len(imgs[split_name])
        item = ds[1]
        assert item["image"].shape == (1, 28, 28) and item["image"].dtype == torch.float32
        torch.testing.assert_close(item["image"][0], expected01(imgs[split_name][1]), rtol=0, atol=0)
        assert item["label"].dtype == torch.int64 and item["label"].shape == ()
        assert item["label"].item() == labs[split_name][1, 0]
    assert ds.targets == labs["test"][:, 0].tolist() and not ds.multi_label
    assert MedMNISTDataset(path, channels=3)[0]["image"].shape == (3, 28, 28)


def test_medmnist_rgb_and_multilabel(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (4, 28, 28, 3), dtype=np.uint8)
    multi = rng.integers(0, 2, (4, 14)).astype(np.uint8)
    path = medmnist(tmp_path / "chest.npz", {"train": rgb}, {"train": multi})
    ds = MedMNISTDataset(path)
    item = ds[2]
    torch.testing.assert_close(item["image"], expected01(rgb[2]).permute(2, 0, 1), rtol=0, atol=0)
    assert ds.multi_label and ds.targets is None
    assert item["label"].shape == (14,) and item["label"].dtype == torch.int64
    assert item["label"].tolist() == multi[2].tolist()
    gray = MedMNISTDataset(path, channels=1)[2]["image"]
    luma = (rgb[2].astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], np.float32)
    torch.testing.assert_close(gray[0], torch.from_numpy(luma))
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 28, 28) and batch["label"].shape == (4, 14)


def test_medmnist_3d_volumes(tmp_path):
    vol = np.random.default_rng(2).integers(0, 256, (3, 28, 28, 28), dtype=np.uint8)
    path = medmnist(tmp_path / "organmnist3d.npz", {"val": vol}, {"val": np.array([[1], [0], [5]])})
    item = MedMNISTDataset(path, split="val")[0]
    assert item["image"].shape == (1, 28, 28, 28)
    torch.testing.assert_close(item["image"][0], expected01(vol[0]), rtol=0, atol=0)


def test_medmnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        MedMNISTDataset(tmp_path / "absent.npz")
    imgs = np.zeros((3, 28, 28), np.uint8)
    path = medmnist(tmp_path / "p.npz", {"train": imgs}, {"train": np.zeros((3, 1), np.uint8)})
    with pytest.raises(ValueError, match=r"missing key\(s\) \['val_images', 'val_labels'\]"):
        MedMNISTDataset(path, split="val")
    with pytest.raises(ValueError, match="split"):
        MedMNISTDataset(path, split="validation")
    short = medmnist(tmp_path / "short.npz", {"train": imgs}, {"train": np.zeros((2, 1), np.uint8)})
    with pytest.raises(ValueError, match=r"short\.npz: train_images has 3 entries but train_labels has 2"):
        MedMNISTDataset(short)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\3\4 not really a zip")
    with pytest.raises(ValueError, match=r"broken\.npz"):
        MedMNISTDataset(broken)


# --------------------------------------------------------------------------- DICOM


def write_dicom(path: Path, pixels: np.ndarray, slope: float = 1.0, intercept: float = 0.0,
                window: tuple[float, float] | None = None, z: float | None = None, instance: int | None = None,
                series: str = "1.2.3.4", photometric: str = "MONOCHROME2") -> Path:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if z is not None:
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    if instance is not None:
        ds.InstanceNumber = instance
    ds.PixelData = pixels.astype(np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


STORED = np.array([[-300, -200, -100, 0], [100, 200, 300, 400], [500, 600, 700, 800]], np.int16)


def test_read_dicom_rescale_and_windowing(tmp_path):
    from medimg.data.dicom import read_dicom

    path = write_dicom(tmp_path / "ct.dcm", STORED, slope=2.0, intercept=-1024.0, window=(40.0, 400.0))
    hu = STORED.astype(np.float64) * 2.0 - 1024.0
    image = read_dicom(path)
    assert image.shape == (1, 3, 4) and image.dtype == torch.float32
    torch.testing.assert_close(image[0], torch.from_numpy((hu - hu.min()) / (hu.max() - hu.min())).float())
    lo, hi = 40 - 200, 40 + 200  # center -/+ width / 2
    expected = torch.from_numpy(np.clip((hu - lo) / (hi - lo), 0, 1)).float()
    torch.testing.assert_close(read_dicom(path, window="auto")[0], expected)
    torch.testing.assert_close(read_dicom(path, window=(40, 400))[0], expected)
    assert read_dicom(path, window="auto")[0, 2].tolist() == pytest.approx([0.34, 0.84, 1.0, 1.0])
    plain = write_dicom(tmp_path / "plain.dcm", STORED)  # no window in the file: auto is min-max
    torch.testing.assert_close(read_dicom(plain, window="auto"), read_dicom(plain))
    inverted = write_dicom(tmp_path / "xray.dcm", STORED, photometric="MONOCHROME1")
    torch.testing.assert_close(read_dicom(inverted), 1.0 - read_dicom(plain))


def test_read_dicom_errors(tmp_path):
    pytest.importorskip("pydicom")
    from medimg.data.dicom import read_dicom

    with pytest.raises(FileNotFoundError, match=r"gone\.dcm"):
        read_dicom(tmp_path / "gone.dcm")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"definitely not DICOM")
    with pytest.raises(ValueError, match=r"junk\.dcm: cannot read DICOM"):
        read_dicom(junk)
    with pytest.raises(ValueError, match="window"):
        read_dicom(junk, window=(40, 0))


def test_read_dicom_series_orders_slices(tmp_path):
    from medimg.data.dicom import read_dicom_series

    zs = [5.0, -2.5, 0.0, 2.5]  # written in this order, named so that file order is wrong too
    for i, z in enumerate(zs):
        write_dicom(tmp_path / "s" / f"img{i}.dcm", np.full((3, 4), 10 * i, np.int16), z=z, instance=10 - i)
    volume = read_dicom_series(tmp_path / "s")
    assert volume.shape == (1, 4, 3, 4) and volume.dtype == torch.float32
    order = [volume[0, d, 0, 0].item() * 30 for d in range(4)]  # min-max over 0..30
    assert order == pytest.approx([10, 20, 30, 0])  # z = -2.5, 0, 2.5, 5
    for i, n in enumerate([3, 1, 2]):  # without positions: by InstanceNumber
        write_dicom(tmp_path / "n" / f"{i}.dcm", np.full((2, 2), 100 * n, np.int16), instance=n)
    by_number = read_dicom_series(tmp_path / "n")
    assert by_number[0, :, 0, 0].tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_read_dicom_series_errors(tmp_path):
    from medimg.data.dicom import read_dicom_series

    write_dicom(tmp_path / "a" / "1.dcm", np.zeros((3, 4), np.int16), z=0.0)
    write_dicom(tmp_path / "a" / "2.dcm", np.zeros((3, 5), np.int16), z=1.0)
    with pytest.raises(ValueError, match=r"2\.dcm: slice size \(3, 5\) differs from .*1\.dcm: \(3, 4\)"):
        read_dicom_series(tmp_path / "a")
    write_dicom(tmp_path / "b" / "1.dcm", np.zeros((3, 4), np.int16), z=0.0, series="1.1")
    write_dicom(tmp_path / "b" / "2.dcm", np.zeros((3, 4), np.int16), z=1.0, series="1.2")
    with pytest.raises(ValueError, match="2 series"):
        read_dicom_series(tmp_path / "b")
    write_dicom(tmp_path / "c" / "1.dcm", np.zeros((3, 4), np.int16))
    with pytest.raises(ValueError, match=r"1\.dcm: neither ImagePositionPatient nor InstanceNumber"):
        read_dicom_series(tmp_path / "c")
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match="no files"):
        read_dicom_series(tmp_path / "d")


def test_dicom_slice_dataset(tmp_path):
    from medimg.data.dicom import DicomSliceDataset, read_dicom

    write_dicom(tmp_path / "p1" / "a.dcm", STORED, window=(300.0, 600.0))
    write_dicom(tmp_path / "p2" / "B.DCM", STORED * 2)
    (tmp_path / "p2" / "notes.txt").write_text("ignored")
    ds = DicomSliceDataset(tmp_path)
    assert len(ds) == 2 and ds[1]["path"].endswith("B.DCM")
    torch.testing.assert_close(ds[0]["image"], read_dicom(tmp_path / "p1" / "a.dcm", window=(300.0, 600.0)))
    assert DicomSliceDataset(tmp_path, window=None, size=8)[0]["image"].shape == (1, 8, 8)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        DicomSliceDataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no files"):
        DicomSliceDataset(tmp_path / "p2", pattern="*.ima")


# --------------------------------------------------------------------------- NIfTI


def write_nifti(path: Path, data: np.ndarray) -> Path:
    nibabel = pytest.importorskip("nibabel")
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), path)
    return path


def test_read_nifti_axis_order_and_windows(tmp_path):
    from medimg.data.nifti import read_nifti

    x, y, z = 5, 4, 3
    data = np.arange(x * y * z, dtype=np.float32).reshape(x, y, z)  # data[i, j, k]
    path = write_nifti(tmp_path / "vol.nii.gz", data)
    volume = read_nifti(path)
    assert volume.shape == (1, z, y, x) and volume.dtype == torch.float32
    expected = torch.from_numpy(data.transpose(2, 1, 0) / data.max())
    torch.testing.assert_close(volume[0], expected)
    assert volume[0, 2, 1, 3].item() == pytest.approx(data[3, 1, 2] / data.max())
    windowed = read_nifti(path, window=(10.0, 30.0))[0]
    torch.testing.assert_close(windowed, torch.from_numpy(np.clip((data.transpose(2, 1, 0) - 10) / 20, 0, 1)))
    lo, hi = np.percentile(data, (0.5, 99.5))
    robust = read_nifti(path, window="percentile")[0]
    expected = np.clip((data.transpose(2, 1, 0) - lo) / (hi - lo), 0, 1)
    torch.testing.assert_close(robust, torch.from_numpy(expected).float())
    with pytest.raises(ValueError, match="window"):
        read_nifti(path, window=(3, 1))
    with pytest.raises(FileNotFoundError, match=r"none\.nii"):
        read_nifti(tmp_path / "none.nii")
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"nope" * 100)
    with pytest.raises(ValueError, match=r"junk\.nii: cannot read NIfTI"):
        read_nifti(junk)


def test_nifti_dataset_masks_and_shape_check(tmp_path):
    from medimg.data.nifti import NiftiDataset

    rng = np.random.default_rng(0)
    img = write_nifti(tmp_path / "img.nii.gz", rng.random((6, 5, 4)).astype(np.float32))
    labels = rng.integers(0, 3, (6, 5, 4)).astype(np.uint8)
    seg = write_nifti(tmp_path / "seg.nii.gz", labels)
    ds = NiftiDataset([img], [seg])
    item = ds[0]
    assert item["image"].shape == (1, 4, 5, 6) and item["mask"].shape == (4, 5, 6)
    assert item["mask"].dtype == torch.int64
    assert torch.equal(item["mask"], torch.from_numpy(labels.transpose(2, 1, 0).astype(np.int64)))
    assert "mask" not in NiftiDataset([img])[0]
    wrong = write_nifti(tmp_path / "wrong.nii.gz", np.zeros((6, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"wrong\.nii\.gz.*\(3, 5, 6\).*img\.nii\.gz.*\(4, 5, 6\)"):
        NiftiDataset([img], [wrong])[0]
    with pytest.raises(ValueError, match="masks: 2 files for 1 images"):
        NiftiDataset([img], [seg, seg])
    with pytest.raises(TypeError, match="images"):
        NiftiDataset(str(img))
    with pytest.raises(FileNotFoundError, match=r"lost\.nii"):
        NiftiDataset([tmp_path / "lost.nii"])


# --------------------------------------------------------------------------- split


class Labelled(Dataset):
    """Items are dicts with a label and nothing else to read labels from."""

    def __init__(self, labels: list[int]) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": torch.zeros(1, 2, 2), "label": torch.tensor(self.labels[i])}


def check_split(labels: list[int], train, val, fraction: float) -> None:
    n = len(labels)
    train_idx, val_idx = list(train.indices), list(val.indices)
    assert not set(train_idx) & set(val_idx) and sorted(train_idx + val_idx) == list(range(n))
    for c in set(labels):
        size = labels.count(c)
        in_val = sum(labels[i] == c for i in val_idx)
        assert abs(in_val - fraction * size) <= 1, (c, size, in_val)
        if size >= 2:
            assert 1 <= in_val <= size - 1


def test_split_stratified_from_samples(tmp_path):
    for name, n in (("no", 7), ("yes", 13)):
        for i in range(n):
            save(tmp_path / name / f"{i}.png", np.zeros((2, 2), np.uint8))
    ds = ImageFolderDataset(tmp_path)
    train, val = split(ds, val=0.25, seed=3)
    assert len(val) == 5 and len(train) == 15 and train.dataset is ds
    check_split(ds.targets, train, val, 0.25)
    again_train, again_val = split(ds, val=0.25, seed=3)
    assert again_train.indices == train.indices and again_val.indices == val.indices
    assert split(ds, val=0.25, seed=4)[1].indices != val.indices


def test_split_labels_from_items_and_small_classes():
    labels = [0] * 40 + [1] * 2 + [2] * 9
    train, val = split(Labelled(labels), val=0.1, seed=0)
    check_split(labels, train, val, 0.1)
    assert all(any(labels[i] == c for i in val.indices) for c in (0, 1, 2))
    assert isinstance(val[0], dict)
    singletons = [0, 0, 0, 1]  # a class of one sample goes to train
    train, val = split(Labelled(singletons), val=0.5, labels=singletons)
    assert 3 in train.indices and len(val) == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=80), st.floats(0.05, 0.95), st.integers(0, 2**31))
def test_split_stratified_property(labels, fraction, seed):
    if len(set(labels)) == len(labels):
        with pytest.raises(ValueError, match="stratify=False"):
            split(Labelled(labels), val=fraction, seed=seed, labels=labels)
        return
    train, val = split(Labelled(labels), val=fraction, seed=seed, labels=labels)
    check_split(labels, train, val, fraction)


def test_split_unstratified_and_errors():
    ds = Labelled([0, 1] * 10)
    train, val = split(ds, val=0.3, stratify=False, seed=1)
    assert len(val) == 6 and sorted(train.indices + val.indices) == list(range(20))
    assert split(ds, val=0.3, stratify=False, seed=1)[1].indices == val.indices
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="val"):
            split(ds, val=bad)
    with pytest.raises(ValueError, match="at least 2 samples"):
        split(Labelled([]))
    with pytest.raises(ValueError, match="labels: 3 labels"):
        split(ds, labels=[0, 1, 0])
    multi = TensorDataset(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="stratify=False"):
        split(multi)
    with pytest.raises(ValueError, match="label shape"):
        split(Labelled([0] * 4), labels=torch.zeros(4, 2))


# --------------------------------------------------------------------------- DeviceAugmentLoader


class Counting:
    """A transform wrapper that counts its calls and the batch sizes it saw."""

    def __init__(self, transform) -> None:
        self.transform, self.calls = transform, []

    def __call__(self, image, mask=None, generator=None):
        self.calls.append(image.shape[0])
        return self.transform(image, mask, generator=generator)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_device_augment_loader_once_per_batch_and_aligned(tmp_path, num_workers):
    drive(tmp_path, ids=tuple(f"{i:02d}" for i in range(21, 26)), h=24, w=24, image_equals_manual=True)
    ds = DRIVEDataset(tmp_path, channels=1)
    loader = DataLoader(ds, batch_size=2, num_workers=num_workers, timeout=60 if num_workers else 0)
    affine = Counting(RandomAffine(degrees=30, scale=(0.8, 1.2), translate=0.1, hflip_p=0.5, mode="nearest"))
    wrapped = DeviceAugmentLoader(loader, affine, device="cpu", mask_key=("mask", "fov"),
                                  generator=torch.Generator().manual_seed(0))
    assert len(wrapped) == 3
    batches = list(wrapped)
    assert affine.calls == [2, 2, 1]
    changed = False
    for i, batch in enumerate(batches):
        image, mask, fov = batch["image"], batch["mask"], batch["fov"]
        assert image.shape[1:] == (1, 24, 24) and mask.dtype == torch.int64 and fov.dtype == torch.bool
        assert set(mask.unique().tolist()) <= {0, 1}
        assert torch.equal(image[:, 0], mask.float()), "image and mask moved apart"
        assert torch.equal(fov, mask.bool())
        assert batch["id"] == [ds[j]["id"] for j in range(2 * i, min(2 * i + 2, len(ds)))]
        original = torch.stack([ds[j]["mask"] for j in range(2 * i, min(2 * i + 2, len(ds)))])
        changed |= not torch.equal(original, mask)
    assert changed


def test_device_augment_loader_single_mask_and_compose(tmp_path):
    drive(tmp_path, ids=("21", "22", "23", "24"), image_equals_manual=True)
    loader = DataLoader(DRIVEDataset(tmp_path, channels=1), batch_size=4)
    t = Counting(Compose([RandomAffine(degrees=20, mode="nearest"), RandomGamma(p=0.0)]))
    batch = next(iter(DeviceAugmentLoader(loader, t, generator=torch.Generator().manual_seed(1))))
    assert t.calls == [4] and torch.equal(batch["image"][:, 0], batch["mask"].float())
    first = next(iter(DeviceAugmentLoader(loader, t, generator=torch.Generator().manual_seed(1))))
    assert torch.equal(first["image"], batch["image"])  # reproducible by generator


def test_device_augment_loader_tensor_and_tuple_batches():
    images = torch.rand(6, 1, 8, 8)
    masks = (images[:, 0] > 0.5).long()
    plain = DataLoader(TensorDataset(images, masks), batch_size=3)
    flip = RandomAffine(degrees=0, scale=1.0, hflip_p=1.0, mode="nearest")
    out = list(DeviceAugmentLoader(plain, flip, image_key=0, mask_key=1))
    assert isinstance(out[0], list) and len(out) == 2
    assert torch.equal(out[0][0], images[:3].flip(-1)) and torch.equal(out[0][1], masks[:3].flip(-1))
    only_images = DataLoader(images, batch_size=4)
    out = list(DeviceAugmentLoader(only_images, flip))
    assert torch.equal(out[1], images[4:].flip(-1))
    untouched = list(DeviceAugmentLoader(plain, None))
    assert torch.equal(untouched[1][0], images[3:])
    with pytest.raises(ValueError, match="image_key"):
        list(DeviceAugmentLoader(plain, flip))
    with pytest.raises(TypeError, match="transform"):
        DeviceAugmentLoader(plain, transform="flip")


def test_split_reads_targets_and_numpy_labels(tmp_path):
    labels = np.array([0] * 6 + [1] * 4)
    path = medmnist(tmp_path / "m.npz", {"train": np.zeros((10, 28, 28), np.uint8)}, {"train": labels[:, None]})
    ds = MedMNISTDataset(path)
    train, val = split(ds, val=0.5, seed=0)
    check_split(labels.tolist(), train, val, 0.5)
    as_column = split(ds, val=0.5, seed=0, labels=labels[:, None])  # (N, 1) numpy labels
    assert as_column[1].indices == val.indices


def test_missing_extras_raise_a_clear_import_error(monkeypatch, tmp_path):
    from medimg.data.dicom import read_dicom
    from medimg.data.nifti import read_nifti

    monkeypatch.setitem(sys.modules, "pydicom", None)
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(ImportError, match=re.escape('pip install "medimg[dicom]"')):
        read_dicom(tmp_path / "a.dcm")
    with pytest.raises(ImportError, match=re.escape('pip install "medimg[nifti]"')):
        read_nifti(tmp_path / "a.nii")


# ----------------------------------------------------------------------------- boxes follow their masks

def test_masks_to_boxes_known_answer():
    from medimg.data import masks_to_boxes

    mask = torch.zeros(3, 6, 8, dtype=torch.uint8)
    mask[0, 1:4, 2:7] = 1
    mask[1, 5, 0] = 3
    boxes = masks_to_boxes(mask)
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [[2, 1, 7, 4], [0, 5, 1, 6], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"^mask: "):
        masks_to_boxes(mask[0])


def test_device_loader_recomputes_boxes_after_the_warp():
    from medimg.data import DeviceAugmentLoader, masks_to_boxes
    from medimg.data.synthetic import BrainMRI
    from medimg.transforms import RandomAffine

    ds = BrainMRI(8, size=32, tumour_fraction=1.0, seed=5)
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    flip = RandomAffine(degrees=0, scale=1.0, hflip_p=1.0)
    batch = next(iter(DeviceAugmentLoader(loader, flip, mask_key="mask", box_key="box")))
    original = next(iter(loader))
    assert torch.equal(batch["mask"], original["mask"].flip(-1))
    assert torch.equal(batch["box"], masks_to_boxes(batch["mask"]))
    x0, _, x1, _ = original["box"].unbind(1)
    assert torch.equal(batch["box"][:, 0], 32 - x1) and torch.equal(batch["box"][:, 2], 32 - x0)
    with pytest.raises(ValueError, match=r"^box_key: "):
        DeviceAugmentLoader(loader, flip, mask_key=None, box_key="box")
