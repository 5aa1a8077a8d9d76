from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathxai.errors import ManifestError
from pathxai.manifest import read_manifest
from pathxai.model.augment import Augmenter, MacenkoNormalizer, ReinhardNormalizer, dihedral, hed_jitter
from pathxai.model.datasets import (
    PatchDataset,
    SlideTileDataset,
    patch_positions,
    patches_from_manifest,
    read_rgb,
    rescale_to_mpp,
    tissue_fraction,
)


def test_patch_positions_cover_the_image_flush_to_edges() -> None:
    pos = patch_positions(261, 387, 112, 56)
    ys = sorted({y for y, _ in pos})
    xs = sorted({x for _, x in pos})
    assert ys[0] == 0 and ys[-1] == 261 - 112
    assert xs[0] == 0 and xs[-1] == 387 - 112
    assert patch_positions(50, 50, 112, 56) == []
    with pytest.raises(ValueError):
        patch_positions(10, 10, 0, 1)


def test_rescale_to_mpp_changes_size_by_the_ratio() -> None:
    img = np.zeros((522, 775, 3), np.uint8)
    assert rescale_to_mpp(img, 0.62005, 1.24).shape == (261, 388, 3)
    assert rescale_to_mpp(img, 0.5, 0.5) is img


def test_tissue_fraction_separates_white_from_stain() -> None:
    white = np.full((32, 32, 3), 245, np.uint8)
    pink = np.zeros((32, 32, 3), np.uint8)
    pink[...] = (200, 120, 180)
    assert tissue_fraction(white) == 0.0
    assert tissue_fraction(pink) == 1.0


def test_read_rgb_converts_modes(tmp_path: Path) -> None:
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert (read_rgb(tmp_path / "a.png") == 255).all()
    Image.fromarray(np.full((4, 5), 100, np.uint8), "L").save(tmp_path / "g.png")
    g = read_rgb(tmp_path / "g.png")
    assert g.shape == (4, 5, 3) and (g == 100).all()
    Image.fromarray(np.full((4, 5), 65535, np.uint16)).save(tmp_path / "w.png")
    w = read_rgb(tmp_path / "w.png")
    assert w.dtype == np.uint8 and (w == 255).all()


def test_read_rgb_bad_files_are_manifest_errors(tmp_path: Path) -> None:
    (tmp_path / "not.png").write_text("hello")
    with pytest.raises(ManifestError, match="cannot read image"):
        read_rgb(tmp_path / "not.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ManifestError):
        read_rgb(tmp_path / "t.png")
    with pytest.raises(ManifestError, match="not found"):
        read_rgb(tmp_path / "missing.png")


def test_patch_dataset_inherits_labels_and_augments_deterministically() -> None:
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (130, 200, 3), dtype=np.uint8) for _ in range(2)]
    ds = PatchDataset(imgs, [0, 1], size=64, stride=64, augment=Augmenter(), seed=5)
    assert len(ds) == 2 * 2 * 3
    assert ds.patch_labels.tolist() == [0] * 6 + [1] * 6
    x, y = ds[7]
    assert x.shape == (3, 64, 64) and y == 1
    ds.set_epoch(3)
    a, _ = ds[7]
    b, _ = ds[7]
    assert np.array_equal(a.numpy(), b.numpy())
    ds.set_epoch(4)
    c, _ = ds[7]
    assert not np.array_equal(a.numpy(), c.numpy())


def test_small_image_becomes_one_centred_patch() -> None:
    ds = PatchDataset([np.zeros((60, 70, 3), np.uint8)], [1], size=112, stride=56)
    assert len(ds) == 1 and ds[0][0].shape == (3, 60, 60)


def test_augmentations_keep_shape_and_dtype() -> None:
    rng = np.random.default_rng(1)
    img = np.zeros((16, 16, 3), np.uint8)
    img[...] = (180, 90, 160)
    out = hed_jitter(img, rng, 0.2, 0.2)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)
    ramp = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    assert len({dihedral(ramp, k).tobytes() for k in range(8)}) == 8


def test_stain_normalisers_move_colour_towards_reference(
    he_reference: Path, glas_dir: Path, glas_rows
) -> None:
    ref = read_rgb(he_reference)[:256, :256]
    src = read_rgb(glas_dir / glas_rows[0]["path"])[:256, :256]
    for norm in (ReinhardNormalizer(), MacenkoNormalizer()):
        out = norm.fit(ref).transform(src)
        assert out.shape == src.shape and out.dtype == np.uint8
        before = np.abs(src.reshape(-1, 3).mean(0) - ref.reshape(-1, 3).mean(0)).sum()
        after = np.abs(out.reshape(-1, 3).mean(0) - ref.reshape(-1, 3).mean(0)).sum()
        assert after < before, type(norm).__name__


def test_glas_patches_from_manifest(tiny_glas_manifest: Path, glas_dir: Path) -> None:
    m = read_manifest(tiny_glas_manifest)
    ds = patches_from_manifest(m.records[:2], glas_dir, 1.24, 112, 56, min_tissue=0.3, progress=False)
    assert len(ds) > 10
    h0 = int(m.records[0].extra["height"])
    assert abs(ds.images[0].shape[0] - h0 * 0.62005 / 1.24) <= 1
    assert set(ds.patch_labels.tolist()) <= {0, 1}


def test_slide_tile_dataset_streams_tiles() -> None:
    class T:
        def __init__(self, v: int) -> None:
            self.pixels = np.full((32, 32, 3), v, np.uint8)

    items = list(SlideTileDataset([T(0), T(255)], label=1, mean=(0, 0, 0), std=(1, 1, 1)))
    assert len(items) == 2 and items[1][1] == 1
    assert float(items[1][0].max()) == 1.0
    with pytest.raises(ValueError):
        list(SlideTileDataset([type("B", (), {"pixels": np.zeros((4, 4), np.uint8)})()], label=0))


def _png_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_claiming(60_000, 60_000))
    with pytest.raises(ManifestError, match=r"bomb|limit"):
        read_rgb(p)
