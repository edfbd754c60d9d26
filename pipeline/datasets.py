"""Where datasets live and how to get them: the data dir, known sources, checked install.

Not a stage: this is I/O around the `data` stage, which only parses a file it is given.
A dataset name is one identifier (schemas.data.check_dataset_name), never a path, and every
file written here is resolved and checked to lie under the data dir. A file is installed only
after it passed the `data` stage's validation (and, when fetched, its sha256): to a temp file
first, then renamed; a failed install leaves no file and no empty folder behind.

Beauty (the default) ships gzipped inside the package (research-use data its source repositories
redistribute): without a local copy it is unpacked from there, sha256-checked like a download, so the
default pipeline runs offline. ML-1M and Yelp may not be redistributed: they download, or the user
puts the file in the data dir.
"""
from __future__ import annotations

import gzip
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from pipeline.overrides import ConfigError
from schemas.data import check_dataset_name
from schemas.runtime import Runtime
from stages.core.atomic import temp_beside
from stages.core.files import file_sha256


class DatasetError(Exception):
    """A dataset cannot be found, fetched or verified; the message says what to do."""


class DatasetUsageError(ConfigError):
    """A bad dataset name, URL or hash, or an install that would overwrite (a usage error: exit 2)."""


@dataclass(frozen=True)
class Source:
    name: str
    local: tuple[str, ...]   # files under <data_dir> to use, first found wins
    fetch_to: str            # where `fetch` saves the download (under <data_dir>)
    url: str
    sha256: str


S3REC = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/2a81540ae18615d88ef88227b0c066e5b74781e5/data"
SASREC = "https://raw.githubusercontent.com/kang205/SASRec/e3738967fddab206d6eeb4fda433e7a7034dd8b1/data"

KNOWN: dict[str, Source] = {
    "beauty": Source("beauty", ("beauty/Beauty.txt",), "beauty/Beauty.txt", f"{S3REC}/Beauty.txt",
                     "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"),
    "yelp": Source("yelp", ("yelp/Yelp.txt",), "yelp/Yelp.txt", f"{S3REC}/Yelp.txt",
                   "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed"),
    # The one-line-per-user ml-1m.txt has no public URL with all 6,040 users; SASRec's pair file does.
    "ml-1m": Source("ml-1m", ("ml-1m/ml-1m.txt", "ml-1m/ml-1m.sasrec-pairs.txt"), "ml-1m/ml-1m.sasrec-pairs.txt",
                    f"{SASREC}/ml-1m.txt", "b725f3acb3986fe3130bffd1e77a74d182a1f51799567a236dbd60270f95b0a2"),
}
EXTENSIONS = (".txt", ".inter", ".csv", ".tsv")
PACKAGED = {"beauty": "Beauty.txt.gz"}   # name -> gzipped copy in pipeline/packaged/ (see pyproject package-data)


@dataclass(frozen=True)
class ItemText:
    """A known dataset's item text: where it goes under the data dir and its sha256 (shared/datasets/README.md)."""
    rel: str
    sha256: str
    packaged: str | None = None   # gzipped copy in pipeline/packaged/ (Beauty's titles only: ML-1M's and Yelp's terms)


ITEM_TEXT: dict[str, ItemText] = {
    "beauty": ItemText("beauty/Beauty.items.tsv", "c3e77d929c6d8936c7a1414dff11f012d4e16e3fa35d3c531429c6f9aa31eb36",
                       "Beauty.items.tsv.gz"),
    "ml-1m": ItemText("ml-1m/ml-1m.items.tsv", "2984a1d28851ce8fd1628b8eaea19f3dbbaadf74f99f4b3815d5ff26275276ab"),
    "yelp": ItemText("yelp/Yelp.items.tsv", "b9013d962ac7ef9f9c89bd5195df2651527e08a9996a6922140a40cd61e261a9"),
}


def checked_name(name: str) -> str:
    try:
        return check_dataset_name(name)
    except ValueError as e:
        raise DatasetUsageError(str(e)) from None


def under_data_dir(data_dir: Path, rel: str) -> Path:
    """data_dir/rel, refused if it resolves (through '..' or links) outside the data dir."""
    root = Path(data_dir).resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or path == root:
        raise DatasetUsageError(f"dataset file {rel!r} would lie outside the data dir {root}")
    return path


def candidates(name: str, data_dir: Path) -> list[Path]:
    """Files that may hold dataset `name`, in order of preference. Unknown names: <name>/<name>.<ext>."""
    rels = KNOWN[name].local if name in KNOWN else tuple(f"{name}/{name}{ext}" for ext in EXTENSIONS)
    return [under_data_dir(data_dir, rel) for rel in rels]


def local_path(name: str, data_dir: Path) -> Path | None:
    """The file for dataset `name` under data_dir, or None."""
    return next((p for p in candidates(checked_name(name), data_dir) if p.is_file()), None)


def packaged_path(name: str) -> Path | None:
    """The gzipped copy of dataset `name` shipped inside the package, or None."""
    path = Path(__file__).resolve().parent / "packaged" / PACKAGED[name] if name in PACKAGED else None
    return path if path is not None and path.is_file() else None


def unpack(src: Source, packed: Path, data_dir: Path) -> Path:
    """Unpack the packaged copy to data_dir/src.fetch_to through `install` (temp file, validation,
    rename); the file appears only once its sha256 matches, and a failure leaves nothing behind."""

    return install(under_data_dir(data_dir, src.fetch_to), gunzip_checked(packed, src.sha256), src.name, str(packed))


def gunzip_checked(packed: Path, sha256: str) -> Callable[[Path], None]:
    """A writer that unpacks the packaged `packed` to its temp file and refuses it unless its sha256 matches."""

    def write(tmp: Path) -> None:
        with gzip.open(packed, "rb") as f, open(tmp, "wb") as out:
            shutil.copyfileobj(f, out)
        got = file_sha256(tmp)
        if got != sha256:
            raise DatasetError(f"sha256 mismatch for packaged {packed}: got {got}, expected {sha256}; reinstall tslrec")

    return write


def where_to_put(src: Source, data_dir: Path) -> str:
    """What the user can do instead of a download: the file, its sha256, where it goes."""
    return (f"put {src.url.rsplit('/', 1)[-1]} (sha256 {src.sha256[:12]}...) at {data_dir / src.fetch_to}, "
            f"or point --data-dir / TSLREC_DATA_DIR at a folder that holds {src.fetch_to}")


def locate(name: str, rt: Runtime) -> Path:
    """Find dataset `name`: the data dir, else generate (synthetic), unpack (packaged) or fetch (known)."""
    path = local_path(name, rt.data_dir)
    if path is not None:
        return path
    packed = packaged_path(name)
    if packed is not None:
        return unpack(KNOWN[name], packed, rt.data_dir)
    if name == "synthetic":
        from pipeline.synthetic import SyntheticConfig, write_synthetic

        return write_synthetic(SyntheticConfig(), under_data_dir(rt.data_dir, "synthetic/synthetic.txt"))
    if name not in KNOWN:
        raise DatasetError(
            f"unknown dataset {name!r}: no {name}/{name}.txt (or .inter) under {rt.data_dir}; "
            f"known: {', '.join(KNOWN)}, synthetic; add your own with `tslrec data import FILE --name {name}`")
    if rt.offline:
        raise DatasetError(f"dataset {name!r} not found and offline: {where_to_put(KNOWN[name], rt.data_dir)}")
    try:
        return fetch(KNOWN[name], rt.data_dir)
    except DatasetError as e:
        raise DatasetError(f"{e}; or point --data-dir / TSLREC_DATA_DIR at a folder that holds {KNOWN[name].fetch_to}") from e


def items_rel(name: str, data_dir: Path) -> str:
    """Where dataset `name`'s item text lives under the data dir: a known dataset's pinned place, else
    `<stem>.items.tsv` beside the interaction file (`<name>/<name>.items.tsv`)."""
    if name in ITEM_TEXT:
        return ITEM_TEXT[name].rel
    path = local_path(name, data_dir)
    stem = path.name.split(".")[0] if path is not None else name
    return f"{name}/{stem}.items.tsv"


def locate_items(name: str, rt: Runtime) -> Path:
    """The item text file of dataset `name`: the data dir, else the packaged copy (Beauty), else an error
    that says which file to put where. A known dataset's file is sha256-checked."""
    name = checked_name(name)
    rel = items_rel(name, rt.data_dir)
    path = under_data_dir(rt.data_dir, rel)
    known = ITEM_TEXT.get(name)
    if path.is_file():
        if known is not None and file_sha256(path) != known.sha256:
            raise DatasetError(f"{path}: sha256 {file_sha256(path)[:12]}... is not {name}'s item text "
                               f"({known.sha256[:12]}...); replace the file")
        return path
    if known is not None and known.packaged is not None:
        return unpack_items(known, Path(__file__).resolve().parent / "packaged" / known.packaged, path)
    if known is not None:
        raise DatasetError(f"dataset {name!r} has no item text here: put {Path(rel).name} (sha256 {known.sha256[:12]}...) "
                           f"at {path}; it cannot ship with tslrec (its terms)")
    raise DatasetError(f"dataset {name!r} has no item text: import one with `tslrec data import FILE --name {name} "
                       f"--items ITEMS.tsv`, or put it at {path}")


def written_beside(dest: Path, write: Callable[[Path], None]) -> Path:
    """dest, written through `write(tmp)` to a temp file beside it and renamed only if that returns: a failure
    (a bad hash, a bad row, a signal) leaves neither the file nor a folder made for it."""
    created = _make_dirs(dest.parent)
    tmp = temp_beside(dest, ".install-")
    try:
        write(tmp)
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_empty(created)
        raise
    return dest


def unpack_items(known: ItemText, packed: Path, dest: Path) -> Path:
    """Unpack a packaged item text file to dest, kept only once its sha256 matches."""
    return written_beside(dest, gunzip_checked(packed, known.sha256))


def validate_dataset(path: Path, name: str, fmt: str = "auto"):
    """Parse the file exactly as `tslrec run data` will (its DataOut); raises stages.core.files.DataFormatError."""
    from schemas.data import DataConfig, DataIn
    from stages import data

    return data.run(DataConfig(dataset=name, format=fmt), DataIn(path=path), Runtime(progress=False))


def install_items(dest: Path, items_file: Path, data_file: Path, name: str, fmt: str = "auto") -> Path:
    """Copy an item text file to dest once it parses against the item ids of `data_file` (the user's own
    ids, through the same id map as `run text`); errors name items_file and its line."""
    from stages.core.files import DataFormatError
    from stages.core.idmap import decode_tokens
    from stages.core.item_text import read_items_tsv

    if not items_file.is_file():
        raise DatasetUsageError(f"--items {items_file}: not a regular file")
    tokens = decode_tokens(validate_dataset(data_file, name, fmt).artifacts["item_ids"])

    def write(tmp: Path) -> None:
        shutil.copyfile(items_file, tmp)
        try:
            read_items_tsv(tmp, tokens)
        except DataFormatError as e:
            raise DataFormatError(str(e).replace(str(tmp), str(items_file))) from None

    return written_beside(dest, write)


def install(dest: Path, write: Callable[[Path], None], name: str, origin: str, *, fmt: str = "auto",
            replaces: list[Path] = ()) -> Path:
    """Write a dataset file through `write(tmp)`, validate it, then rename it to dest.

    `origin` names the source in errors (file:line refers to it); `replaces`: other files of the
    same dataset to remove once dest is in place (--force)."""
    from stages.core.files import DataFormatError

    created = _make_dirs(dest.parent)
    tmp = temp_beside(dest, ".install-")   # named, not created: a signal before the try leaves nothing
    try:
        write(tmp)
        try:
            validate_dataset(tmp, name, fmt)
        except DataFormatError as e:
            raise DataFormatError(str(e).replace(str(tmp), origin)) from None
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_empty(created)
        raise
    for old in replaces:
        if old != dest:
            old.unlink(missing_ok=True)
    return dest


def _make_dirs(folder: Path) -> list[Path]:
    """mkdir -p folder; returns the folders it created, deepest last."""
    missing = []
    for p in [folder, *folder.parents]:
        if p.exists():
            break
        missing.append(p)
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def _remove_empty(created: list[Path]) -> None:
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            break     # not empty (another file arrived): keep it and its parents


def check_https(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise DatasetUsageError(f"--url {url!r}: only https:// URLs are fetched; give a local file with --file PATH")
    return url


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https URLs (a https URL must not be turned into plain http)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme != "https":
            raise DatasetError(f"{req.full_url} redirects to {newurl}: refused (not https)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


OPENER = urllib.request.build_opener(_HttpsOnlyRedirects)


def fetch(src: Source, data_dir: Path, *, from_file: Path | None = None, replace: bool = False,
          timeout: float = 60.0) -> Path:
    """Download src.url (https only) or copy from_file to data_dir/src.fetch_to; the file appears
    only once its sha256 matches and it parses as a dataset."""
    dest = under_data_dir(data_dir, src.fetch_to)
    origin = str(from_file) if from_file is not None else check_https(src.url)

    def write(tmp: Path) -> None:
        try:
            if from_file is not None:
                shutil.copyfile(from_file, tmp)
            else:
                with OPENER.open(src.url, timeout=timeout) as resp, open(tmp, "wb") as out:
                    shutil.copyfileobj(resp, out)
        except (OSError, DatasetError) as e:
            raise DatasetError(f"cannot get {src.name} from {origin} ({e}); "
                               f"put the file at {dest} by hand (sha256 {src.sha256})") from e
        got = file_sha256(tmp)
        if got != src.sha256:
            raise DatasetError(f"sha256 mismatch for {origin}: got {got}, expected {src.sha256}")

    others = [p for p in candidates(src.name, data_dir) if p != dest] if replace and src.name not in KNOWN else []
    return install(dest, write, src.name, origin, replaces=others)
