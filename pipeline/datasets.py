"""Where datasets live and how to get them: the data dir, known sources, sha256-checked download.

Not a stage: this is I/O around the `data` stage, which only parses a file it is given.
Beauty (the default) ships gzipped inside the package (research-use data its source repositories
redistribute): without a local copy it is unpacked from there, sha256-checked like a download, so the
default pipeline runs offline. ML-1M and Yelp may not be redistributed: they download, or the user
puts the file in the data dir.
"""
from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipeline.cache import file_sha256
from schemas.runtime import Runtime


class DatasetError(Exception):
    """A dataset cannot be found, fetched or verified; the message says what to do."""


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


def local_path(name: str, data_dir: Path) -> Path | None:
    """The file for dataset `name` under data_dir, or None. Unknown names: <name>/<name>.<ext>."""
    candidates = KNOWN[name].local if name in KNOWN else tuple(f"{name}/{name}{ext}" for ext in EXTENSIONS)
    for rel in candidates:
        if (data_dir / rel).is_file():
            return data_dir / rel
    return None


def packaged_path(name: str) -> Path | None:
    """The gzipped copy of dataset `name` shipped inside the package, or None."""
    path = Path(__file__).resolve().parent / "packaged" / PACKAGED[name] if name in PACKAGED else None
    return path if path is not None and path.is_file() else None


def unpack(src: Source, packed: Path, data_dir: Path) -> Path:
    """Unpack the packaged copy to data_dir/src.fetch_to; the file appears only once its sha256 matches,
    and a failure leaves no file and no folder that was not there before."""
    dest = data_dir / src.fetch_to
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]   # deepest first
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".unpack-")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with gzip.open(packed, "rb") as f, open(tmp, "wb") as out:
            shutil.copyfileobj(f, out)
        got = file_sha256(tmp)
        if got != src.sha256:
            raise DatasetError(f"sha256 mismatch for packaged {packed}: got {got}, expected {src.sha256}; reinstall tslrec")
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for p in created:
            try:
                p.rmdir()
            except OSError:
                break
        raise
    return dest


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
        from stages.synthetic import SyntheticConfig, write_synthetic

        return write_synthetic(SyntheticConfig(), rt.data_dir / "synthetic" / "synthetic.txt")
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


def fetch(src: Source, data_dir: Path, *, timeout: float = 60.0) -> Path:
    """Download src.url to data_dir/src.fetch_to, verifying sha256 before the file appears."""
    dest = data_dir / src.fetch_to
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=".download-", delete=False) as tmp:
        try:
            with urllib.request.urlopen(src.url, timeout=timeout) as resp:
                shutil.copyfileobj(resp, tmp)
        except Exception as e:
            Path(tmp.name).unlink(missing_ok=True)
            raise DatasetError(f"cannot download {src.name} from {src.url} ({e}); "
                               f"put the file at {dest} by hand (sha256 {src.sha256})") from e
    got = file_sha256(Path(tmp.name))
    if got != src.sha256:
        Path(tmp.name).unlink(missing_ok=True)
        raise DatasetError(f"sha256 mismatch for {src.url}: got {got}, expected {src.sha256}")
    Path(tmp.name).replace(dest)
    return dest
