"""fashion-colors: coloured Fashion-MNIST product photos with simulated users (the simulation).

Items. Fashion-MNIST garments (28x28 grey, 10 classes) are laid out like product photos: a
2-pixel white margin (32x32 RGB), an off-white background (level 246..255), and the garment
tinted with one colour of ``PALETTE``; the grey intensity is used both as opacity (faint
pixels blend into the background) and as shading (``SHADE_MIN`` .. 1 of the tint). Colours
are balanced within each category, and subsets over (category, colour); each item's tint is
its palette colour with a small random jitter. Rendering is deterministic from the stored grey
sources (``render``). Item ids name the Fashion-MNIST image: ``train-01234``, ``test-00042``.

Users. Each simulated user has a hidden taste (``Dataset.tastes``):

``category``      (U, 10) category preferences, Dirichlet around a population prior;
``color``         (U, K) affinity in [0, 1] to each palette colour: a Gaussian kernel, in
                  CIELAB distance, around a favourite colour (and, for some users, a second);
``w_category``, ``w_color`` (U,) how much each user cares about either (log-normal);
``favorite_color`` (U,) palette id of the favourite colour (for display);
``palette_lab``   (K, 3) the measured colour of each palette entry (shared by all users);
``color_bandwidth`` () the CIELAB bandwidth that turns a measured colour into palette
                  memberships.

The true utility of an item for a user is (``true_utility``)::

    w_category[u] * log(max(category[u, c], 1e-3)) + w_color[u] * (m(colour) . color[u])

where ``m(colour)`` is a soft assignment of the item's colour to the palette. A user's
activity n_u = 3 + floor(LogNormal(log 9, 1)) (at most 300) items are sampled without
replacement from softmax(utility) (Gumbel top-k); one is held out for validation and one for
test, at random, as DVBPR does.

The colour of any image -- a catalogue item or a generated one -- is measured from its pixels
by ``measure_color`` and ``true_utility`` accepts that measured RGB, so the ground truth
(``gis_fashion_colors.truth``, gis's ``GroundTruth`` interface) can judge whether a shifted
image is really preferred.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from gis.data import Dataset
from gis.data.split import dvbpr_split
from gis.errors import GisUsageError, MissingAssetError

FORMAT = "gis-fashion-colors/1"
DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"

CATEGORY_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

#: (name, tint RGB) of each palette colour; the palette id is the position here
PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (205, 32, 38)),
    ("orange", (242, 130, 22)),
    ("yellow", (238, 200, 24)),
    ("green", (46, 150, 62)),
    ("teal", (0, 148, 150)),
    ("blue", (34, 82, 205)),
    ("purple", (125, 52, 172)),
    ("pink", (240, 112, 176)),
    ("black", (38, 38, 42)),
    ("grey", (140, 140, 146)),
)
COLOR_NAMES = [name for name, _ in PALETTE]
PALETTE_RGB = np.array([rgb for _, rgb in PALETTE], dtype=np.uint8)

#: population priors: which categories and favourite colours are common (non-visual signal)
CATEGORY_PRIOR = np.array([1.4, 0.8, 1.2, 1.3, 0.9, 0.7, 1.0, 1.5, 0.8, 0.6])
COLOR_PRIOR = np.array([1.0, 0.7, 0.6, 0.9, 0.7, 1.3, 0.8, 0.9, 1.4, 0.7])

MARGIN = 2             # white pixels around the 28x28 garment -> 32x32
SIZE = 28 + 2 * MARGIN
SHADE_MIN = 0.72       # darkest shading of the tint
OPAQUE_AT = 0.28       # grey intensity from which the garment is fully opaque
TINT_JITTER = 7.0      # std of the per-channel jitter of an item's tint
COLOR_BANDWIDTH = 12.0  # CIELAB units: measured colour -> palette memberships
TASTE_BANDWIDTH = 30.0  # CIELAB units: favourite colour -> affinity to other palette colours
CATEGORY_FLOOR = 1e-3
CATEGORY_CONCENTRATION = 0.6  # Dirichlet concentration (times the normalised prior)
W_CATEGORY = 1.5       # median weight of the category term
W_COLOR = 6.0          # median weight of the colour term
SECOND_COLOR = (0.4, 0.7)  # share of users with a second liked colour, and its affinity

#: subset shipped with the plugin (``gis data build`` without ``--full``)
SUBSET = {"items": 6000, "heldout": 2000, "users": 3000}
#: ``gis data build --full``: every Fashion-MNIST image
FULL = {"items": 60000, "heldout": 10000, "users": 20000}
DEFAULT_SEED = 0
#: Item that ``gis shift`` modifies when no ``--item`` is given (``meta["default_item"]``): a
#: plain yellow T-shirt/top of the catalogue (Fashion-MNIST train image 12830; it looks the
#: same in every build with seed 0, ``--full`` included). Yellow is the colour the simulated
#: users like least, so a shift has room to help. Get it with
#: ``load().item_image(DEFAULT_ITEM_ID)`` -> (1, 3, 32, 32) in [-1, 1].
DEFAULT_ITEM_ID = "train-12830"

# --------------------------------------------------------------------------------------------
# Fashion-MNIST sources


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise GisUsageError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise GisUsageError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise GisUsageError(f"{path}: IDX header says {shape} but the file is truncated")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def read_fashion_mnist(source: str | Path = DEFAULT_SOURCE
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images (60000, 28, 28), train labels, test images (10000, 28, 28), test labels)
    from the four IDX files (``.gz`` or not) in ``source``."""
    source = Path(source)
    out = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        cands = [source / f"{stem}.gz", source / stem]
        found = next((c for c in cands if c.exists()), None)
        if found is None:
            raise MissingAssetError(
                f"Fashion-MNIST file {stem}(.gz) not found in {source}; install it with "
                "`apt-get install dataset-fashion-mnist` (files in "
                f"{DEFAULT_SOURCE}) or pass --source DIR"
            )
        out.append(read_idx(found))
    return out[0], out[1].astype(np.int64), out[2], out[3].astype(np.int64)


# --------------------------------------------------------------------------------------------
# colour


def srgb_to_lab(rgb) -> np.ndarray:
    """sRGB (..., 3) in 0..255 -> CIELAB (D65), float64."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    d = 6.0 / 29.0
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    lab = np.stack([116.0 * f[..., 1] - 16.0,
                    500.0 * (f[..., 0] - f[..., 1]),
                    200.0 * (f[..., 1] - f[..., 2])], axis=-1)
    return lab


def measure_color(images, *, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """The garment colour of each image, measured from its pixels: (N, 3) float RGB 0..255.

    ``images``: uint8 (N, H, W, 3) (or one (H, W, 3)), or a float tensor/array (N, 3, H, W)
    in ``value_range`` (e.g. generator outputs). The background is the median of the border
    pixels; a pixel's ink is its largest channel difference from it; the colour is the mean
    of the pixels inked at least half as much as the image's 98th percentile (and at least
    24/255). Images with no visible garment get their background colour.
    """
    import torch

    from gis.images import to_uint8

    arr = torch.from_numpy(to_uint8(images, value_range)).float()  # (N, H, W, 3)
    n = arr.shape[0]
    border = torch.cat([arr[:, 0], arr[:, -1], arr[:, :, 0], arr[:, :, -1]], dim=1)
    bg = border.median(dim=1).values  # (N, 3)
    ink = (arr - bg[:, None, None, :]).abs().amax(-1).reshape(n, -1)
    thr = torch.clamp(0.5 * torch.quantile(ink, 0.98, dim=1), min=24.0)
    mask = (ink >= thr[:, None]).float()
    cnt = mask.sum(1)
    out = (arr.reshape(n, -1, 3) * mask[..., None]).sum(1) / cnt.clamp(min=1)[:, None]
    out = torch.where((cnt == 0)[:, None], bg, out)
    return out.numpy()


def color_memberships(color, palette_lab: np.ndarray,
                      bandwidth: float = COLOR_BANDWIDTH) -> np.ndarray:
    """Soft assignment (N, K) of colours to the palette.

    ``color``: int palette ids (N,) -> one-hot; or measured RGB (N, 3) floats in 0..255 ->
    softmax over palette entries of -dE^2 / (2 bandwidth^2), dE the CIELAB distance to each
    entry's measured colour ``palette_lab``.
    """
    color = np.asarray(color)
    k = len(palette_lab)
    if color.ndim == 1 and np.issubdtype(color.dtype, np.integer):
        if len(color) and (color.min() < 0 or color.max() >= k):
            raise GisUsageError(f"palette ids must lie in [0, {k})")
        return np.eye(k)[color]
    if color.ndim != 2 or color.shape[1] != 3:
        raise GisUsageError(f"colours must be palette ids (N,) or RGB (N, 3), got {color.shape}")
    lab = srgb_to_lab(np.clip(color, 0, 255))
    d2 = ((lab[:, None, :] - np.asarray(palette_lab)[None]) ** 2).sum(-1)
    logits = -d2 / (2.0 * float(bandwidth) ** 2)
    logits -= logits.max(1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


def true_utility(tastes: dict[str, np.ndarray], user_rows, category, color) -> np.ndarray:
    """Ground-truth utility of items for simulated users (higher = truly preferred).

    ``tastes``: ``Dataset.tastes`` of a fashion-colors dataset. ``user_rows``: one user row
    (int) or an array (U',) of rows. ``category``: int array (N,) of category ids.
    ``color``: palette ids (N,) int, or RGB (N, 3) floats in 0..255 -- typically
    ``measure_color(images)`` of generated images, or ``attributes["color_rgb"]``.

    Returns (U', N) float64, or (N,) for a single user row::

        w_category[u] * log(max(category[u, c], 1e-3)) + w_color[u] * (m(colour) . color[u])
    """
    single = np.ndim(user_rows) == 0
    rows = np.atleast_1d(np.asarray(user_rows, dtype=np.int64))
    cat = np.asarray(category, dtype=np.int64)
    m = color_memberships(color, tastes["palette_lab"], float(tastes["color_bandwidth"]))
    if len(cat) != len(m):
        raise GisUsageError(f"{len(cat)} categories for {len(m)} colours")
    logp = np.log(np.maximum(tastes["category"][rows], CATEGORY_FLOOR))  # (U', C)
    u = (tastes["w_category"][rows, None] * logp[:, cat]
         + tastes["w_color"][rows, None] * (tastes["color"][rows] @ m.T))
    return u[0] if single else u


# --------------------------------------------------------------------------------------------
# items


def stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices balanced over the classes of ``labels`` (sorted)."""
    classes = np.unique(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    per, extra = divmod(n, len(classes))
    picks = []
    for k, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        take = min(len(idx), per + (1 if k < extra else 0))
        picks.append(rng.choice(idx, size=take, replace=False))
    return np.sort(np.concatenate(picks))


def assign_colors(categories: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Palette ids balanced within each category (shuffled)."""
    k = len(PALETTE)
    out = np.empty(len(categories), dtype=np.int64)
    for c in np.unique(categories):
        idx = np.flatnonzero(categories == c)
        ids = np.resize(rng.permutation(k), len(idx))
        out[idx] = rng.permutation(ids)
    return out


def item_looks(colors: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(tint (N, 3) uint8, background level (N,) uint8) for palette ids."""
    tint = PALETTE_RGB[colors].astype(np.float64) + rng.normal(0, TINT_JITTER, (len(colors), 3))
    bg = rng.integers(246, 256, size=len(colors))
    return np.clip(np.rint(tint), 0, 255).astype(np.uint8), bg.astype(np.uint8)


def render(grey: np.ndarray, tint: np.ndarray, background: np.ndarray, *,
           chunk: int = 1024) -> np.ndarray:
    """Render product photos: grey (N, 28, 28) uint8, tint (N, 3), background (N,) ->
    uint8 (N, 32, 32, 3). Deterministic; see the module docstring. Rendered ``chunk`` items at
    a time (each item on its own: the same pixels for any chunk), so the float temporaries
    stay ~50 MB instead of ~400 MB for the 8,000 embedded items."""
    if len(grey) > chunk:
        return np.concatenate([render(grey[i:i + chunk], tint[i:i + chunk],
                                      background[i:i + chunk], chunk=chunk)
                               for i in range(0, len(grey), chunk)])
    import torch

    g = torch.from_numpy(np.ascontiguousarray(grey)).float() / 255.0
    g = torch.nn.functional.pad(g, (MARGIN, MARGIN, MARGIN, MARGIN))
    gmax = g.reshape(len(g), -1).amax(1).clamp(min=1e-3)[:, None, None]
    alpha = (g / OPAQUE_AT).clamp(0.0, 1.0)[..., None]
    shade = (SHADE_MIN + (1.0 - SHADE_MIN) * (g / gmax))[..., None]
    fg = torch.from_numpy(np.ascontiguousarray(tint)).float()[:, None, None, :] * shade
    bg = torch.from_numpy(np.ascontiguousarray(background)).float()[:, None, None, None]
    out = bg * (1.0 - alpha) + fg * alpha
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


# --------------------------------------------------------------------------------------------
# users


def palette_lab() -> np.ndarray:
    """Measured CIELAB colour of each palette entry (a flat garment rendered in that tint)."""
    block = np.zeros((len(PALETTE), 28, 28), np.uint8)
    block[:, 4:24, 6:22] = 200
    imgs = render(block, PALETTE_RGB, np.full(len(PALETTE), 255, np.uint8))
    return srgb_to_lab(measure_color(imgs))


def sample_tastes(num_users: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Hidden tastes of ``num_users`` simulated users (keys in the module docstring)."""
    k = len(PALETTE)
    cat = rng.dirichlet(CATEGORY_CONCENTRATION * CATEGORY_PRIOR / CATEGORY_PRIOR.mean(),
                        size=num_users)
    lab = palette_lab()
    d = np.sqrt(((lab[:, None] - lab[None]) ** 2).sum(-1))  # (K, K)
    aff = np.exp(-(d ** 2) / (2 * TASTE_BANDWIDTH ** 2))
    fav = rng.choice(k, size=num_users, p=COLOR_PRIOR / COLOR_PRIOR.sum())
    color = aff[fav].copy()
    second = rng.choice(k, size=num_users, p=COLOR_PRIOR / COLOR_PRIOR.sum())
    has_second = rng.random(num_users) < SECOND_COLOR[0]
    color[has_second] = np.maximum(color[has_second], SECOND_COLOR[1] * aff[second[has_second]])
    return {
        "category": cat,
        "color": color,
        "w_category": rng.lognormal(np.log(W_CATEGORY), 0.3, num_users),
        "w_color": rng.lognormal(np.log(W_COLOR), 0.3, num_users),
        "favorite_color": fav.astype(np.int64),
        "palette_lab": lab,
        "color_bandwidth": np.array(COLOR_BANDWIDTH),
    }


def sample_activity(num_users: int, rng: np.random.Generator, max_items: int) -> np.ndarray:
    """Long-tailed number of interactions per user: 3 + floor(LogNormal(log 9, 1)), at most
    300 and at most half the catalogue (so that every user leaves items to sample negatives
    from)."""
    n = 3 + np.floor(rng.lognormal(np.log(9.0), 1.0, num_users)).astype(np.int64)
    return np.minimum(n, max(3, min(300, max_items // 2)))


def sample_interactions(tastes, categories, colors_rgb, activity, rng, *, chunk: int = 256):
    """Per user, ``activity[u]`` distinct items drawn from softmax(true utility) (Gumbel
    top-k). Returns (users (M,), items (M,))."""
    us, its = [], []
    num_users = len(activity)
    for a in range(0, num_users, chunk):
        rows = np.arange(a, min(a + chunk, num_users))
        util = true_utility(tastes, rows, categories, colors_rgb)
        keys = util + rng.gumbel(size=util.shape)
        for r, key in zip(rows, keys, strict=True):
            n = int(activity[r])
            top = np.argpartition(-key, n - 1)[:n]
            us.append(np.full(n, r, dtype=np.int64))
            its.append(top.astype(np.int64))
    return np.concatenate(us), np.concatenate(its)


# --------------------------------------------------------------------------------------------
# build / load


def build_arrays(source: str | Path = DEFAULT_SOURCE, *, items: int = SUBSET["items"],
                 heldout: int = SUBSET["heldout"], users: int = SUBSET["users"],
                 seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Build the compact fashion-colors arrays (what ``save_compact`` writes).

    Every Fashion-MNIST image first gets its look (palette colour, balanced within each class
    of each split; jittered tint; background), so an item id such as ``test-00088`` looks the
    same in every build with the same seed. The catalogue is then ``items`` images of the
    train split (all of them for 60000) and the held-out set ``heldout`` images of the test
    split, both balanced over (category, colour). ``users`` simulated users. Independent
    random streams (looks, selection, users) keep this deterministic for a given ``seed``.
    """
    if items < 10 or users < 1 or heldout < 0:
        raise GisUsageError("need at least 10 items and 1 user")
    tr_x, tr_y, te_x, te_y = read_fashion_mnist(source)
    rng_looks = np.random.default_rng([seed, 1])
    rng_select = np.random.default_rng([seed, 2])
    rng = np.random.default_rng([seed, 3])  # users
    k = len(PALETTE)
    arrays: dict[str, np.ndarray] = {}
    chosen = {}
    for prefix, x, y, n in (("", tr_x, tr_y, items), ("heldout_", te_x, te_y, heldout)):
        colors = assign_colors(y, rng_looks)
        tint, bg = item_looks(colors, rng_looks)
        idx = stratified_indices(y * k + colors, n, rng_select) if n else np.zeros(0, np.int64)
        chosen[prefix] = idx
        arrays[prefix + "grey"] = x[idx]
        arrays[prefix + "category"] = y[idx].astype(np.uint8)
        arrays[prefix + "color"] = colors[idx].astype(np.uint8)
        arrays[prefix + "tint"] = tint[idx]
        arrays[prefix + "background"] = bg[idx]
        arrays[prefix + "source_index"] = idx.astype(np.int32)
    cat_idx, held_idx = chosen[""], chosen["heldout_"]

    tastes = sample_tastes(users, rng)
    rgb = measure_color(render(arrays["grey"], arrays["tint"], arrays["background"]))
    act = sample_activity(users, rng, len(cat_idx))
    u, i = sample_interactions(tastes, arrays["category"].astype(np.int64), rgb, act, rng)
    train, val, test = dvbpr_split(u, i, users, seed=seed)
    arrays.update(train=train.astype(np.int32), val=val.astype(np.int32),
                  test=test.astype(np.int32))
    for key, value in tastes.items():
        arrays["taste__" + key] = np.asarray(value)
    meta = {"name": "fashion-colors", "source": str(source), "seed": int(seed),
            "items": int(len(cat_idx)), "heldout": int(len(held_idx)), "users": int(users),
            "built_by": "gis data build", "format": FORMAT,
            "licence": "Fashion-MNIST (c) Zalando SE, MIT licence"}
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["format"] = np.array(FORMAT)
    return arrays


def save_compact(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write the compact arrays as a compressed npz (no pickled objects)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def user_id_list(n: int) -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"u{k:0{width}d}" for k in range(n)]


def from_compact(arrays, *, path: str | None = None) -> Dataset:
    """Render a compact fashion-colors archive (dict-like of arrays) into a ``Dataset`` that
    offers ground truth (``FashionColorsTruth``) and names ``DEFAULT_ITEM_ID`` as its default
    item."""
    from .truth import FashionColorsTruth

    meta = json.loads(str(arrays["meta"]))
    if path is not None:
        meta["path"] = str(path)

    def part(prefix: str, split: str):
        grey = arrays[prefix + "grey"]
        cats = arrays[prefix + "category"].astype(np.int64)
        colors = arrays[prefix + "color"].astype(np.int64)
        tint = arrays[prefix + "tint"]
        images = render(grey, tint, arrays[prefix + "background"])
        attrs = {"color": colors, "color_rgb": measure_color(images),
                 "tint_rgb": tint.astype(np.float32), "category": cats}
        ids = [f"{split}-{int(s):05d}" for s in arrays[prefix + "source_index"]]
        return images, cats, attrs, ids

    images, cats, attrs, ids = part("", "train")
    h_images, h_cats, h_attrs, h_ids = part("heldout_", "test")
    tastes = {k[len("taste__"):]: np.asarray(arrays[k]) for k in arrays
              if k.startswith("taste__")}
    num_users = len(arrays["val"])
    meta.setdefault("category_names", CATEGORY_NAMES)
    meta["color_names"] = COLOR_NAMES
    meta.setdefault("default_item", DEFAULT_ITEM_ID)
    return Dataset(
        images=images, categories=cats, category_names=list(CATEGORY_NAMES),
        user_ids=user_id_list(num_users),
        train=arrays["train"].astype(np.int64), val=arrays["val"].astype(np.int64),
        test=arrays["test"].astype(np.int64), item_ids=ids, attributes=attrs, tastes=tastes,
        meta=meta, heldout_images=h_images if len(h_images) else None,
        heldout_categories=h_cats if len(h_images) else None,
        heldout_item_ids=h_ids, heldout_attributes=h_attrs if len(h_images) else {},
        ground_truth_factory=FashionColorsTruth,
    )


def build(source: str | Path = DEFAULT_SOURCE, *, full: bool = False, seed: int = DEFAULT_SEED,
          **sizes) -> Dataset:
    """Build a fashion-colors ``Dataset`` in memory (``full``: every Fashion-MNIST image)."""
    opts = dict(FULL if full else SUBSET)
    opts.update({k: v for k, v in sizes.items() if v is not None})
    return from_compact(build_arrays(source, seed=seed, **opts))

