"""`tslrec export`: a run's artifacts as plain files in a folder the user names.

- augment: enhanced.safetensors (embeddings (N+1, H), category_probs (N+1, K));
- pretrain: item_embeddings.safetensors (weight (N+1, d)) and backbone.safetensors;
- group: groups.safetensors (cluster_map (N+1,), centroids (K, d), user_pref (M, K));
- sft: adapter/ (a PEFT folder: adapter_config.json + adapter_model.safetensors, for
  `PeftModel.from_pretrained(base, "adapter")`) and heads.safetensors (linear_proj and the task head);
- encode: text_table.safetensors (embeddings (N+1, H): each item's text read by the LM with no SFT,
  the table of `train.source=text`);
- train: backbone.safetensors.
Row i of every item-indexed tensor is internal item i (row 0 is padding); item_ids.tsv maps rows to the
user's own item ids (from the data run's `item_ids` artifact when it has one, else the ids are the
dataset's own), and user_ids.tsv likewise when the data run has a `user_ids` map. README.txt says what
each file is, its shape and which run made it.
The folder is written under a temporary name and renamed at the end: a crash leaves nothing half-written.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from pipeline.cache import Cache
from pipeline.cli_common import emit, runtime
from pipeline.console import err, os_error_line
from pipeline.overrides import ConfigError
from schemas.common import RunRecord

SKIPPED_KINDS = {"ranks", "sequences", "item_ids", "user_ids"}   # evaluation data; the data stage's own (id maps: .tsv)
WHAT = {
    "enhanced.embeddings": "enhanced item embeddings: the tuned LLM's hidden state for each item's one-item prompt",
    "enhanced.category_probs": "each item's predicted distribution over the K latent categories",
    "item_embeddings.weight": "item embeddings of the pretrained ID backbone",
    "text_table.embeddings": "each item's text read by the language model, no SFT (zero rows: items without text)",
    "groups.cluster_map": "k-means group of each item (-1 on the padding row)",
    "groups.centroids": "k-means centroids",
    "groups.user_pref": "each user's preference distribution over the K groups (row r = internal user r+1)",
    "heads.linear_proj.weight": "projection of item embeddings into the LLM (d -> H), weight",
    "heads.linear_proj.bias": "projection of item embeddings into the LLM, bias",
    "heads.group_head.weight": "category head on the LLM's hidden state (H -> K), weight",
    "heads.group_head.bias": "category head (H -> K), bias",
    "heads.item_head.weight": "E4SRec next-item head (H -> N+1), weight",
    "heads.item_head.bias": "E4SRec next-item head, bias",
}


def find_record(cache: Cache, key: Optional[str], from_: Optional[str]) -> RunRecord:
    """The run to export: a key (or unique prefix) in the cache, or a run record (file or '-')."""
    if (key is None) == (from_ is None):
        raise ConfigError("give either a run KEY (or a prefix of it) or --from RECORD")
    if from_ is not None:   # checked as `run --from` checks it: README.txt must not repeat an edited record
        from pipeline.upstream import read_record

        return read_record(from_)
    rec = cache.find_run(key)
    if rec is None:
        raise ConfigError(f"no single cached run matches {key!r} (see `tslrec cache ls`)")
    return rec


def data_record(cache: Cache, rec: RunRecord) -> Optional[RunRecord]:
    """The data run whose sequences `rec` consumed (rec itself for a data run)."""
    if rec.stage == "data":
        return rec
    digest = rec.inputs.get("sequences")
    return next((r for r in cache.runs() if r.stage == "data" and "sequences" in r.outputs
                 and r.outputs["sequences"].digest == digest), None)


def decode_ids(tensors: dict[str, Any]) -> list[str]:
    """An id map artifact -> the user's ids, index i = internal id i+1. The data stage's encoding
    (stages/core/idmap.py): `utf8` uint8 bytes + `offsets` int64 (n+1,). Also read: one uint8 tensor of
    UTF-8 JSON (a list of ids), or one integer tensor of ids."""
    if "utf8" in tensors and "offsets" in tensors:
        raw, bounds = tensors["utf8"].numpy().tobytes(), tensors["offsets"].tolist()
        return [raw[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]
    (t,) = tensors.values()
    ids = json.loads(t.numpy().tobytes().decode()) if str(t.dtype) == "torch.uint8" else t.tolist()
    return [str(x) for x in ids]


def id_map(cache: Cache, data: Optional[RunRecord], kind: str, n: int) -> Optional[list[str]]:
    """The user's own ids of internal ids 1..n from the data run's `kind` artifact ('item_ids' or
    'user_ids'); None if it has none (the file's ids are then the internal ids)."""
    if data is None or kind not in data.outputs:
        return None
    ids = decode_ids(cache.get(data.outputs[kind]))
    return ids[1:] if len(ids) == n + 1 else ids   # tolerate a map that includes the padding id


def write_id_map(out: Path, kind: str, n: int, ids: Optional[list[str]]) -> dict[str, Any]:
    """<kind>.tsv: internal id (the tensor row; users are row+1 in per-user tensors) -> the user's own id."""
    what = kind.removesuffix("_ids")
    lines = [f"row\t{what}_id"] + [f"{row}\t{ids[row - 1] if ids else row}" for row in range(1, n + 1)]
    (out / f"{kind}.tsv").write_text("\n".join(lines) + "\n")
    source = f"the data run's {kind} map" if ids else f"identity: the dataset's {what} ids are the internal ids"
    return {"file": f"{kind}.tsv", "shape": [n], "what": f"internal {what} id -> your {what} id ({source})"}


def write_tensors(out: Path, kind: str, tensors: dict[str, Any], npy: bool) -> list[dict[str, Any]]:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"{kind}.safetensors"))
    files = []
    for name, t in sorted(tensors.items()):
        what = WHAT.get(f"{kind}.{name}", f"{kind} tensor {name}")
        files.append({"file": f"{kind}.safetensors", "tensor": name, "shape": list(t.shape),
                      "dtype": str(t.dtype).removeprefix("torch."), "what": what})
        if npy:
            import numpy as np

            np.save(out / f"{kind}.{name}.npy", t.numpy())
            files.append({"file": f"{kind}.{name}.npy", "shape": list(t.shape), "what": what})
    return files


def write_adapter(out: Path, adapter: dict[str, Any]) -> list[dict[str, Any]]:
    from stages.lm.model import adapter_meta, save_peft_dir

    meta = adapter_meta(adapter)
    save_peft_dir(adapter, out / "adapter")
    base = meta["sft"]["model"] + (f" (first {meta['sft']['num_layers']} layers)" if meta["sft"].get("num_layers") else "")
    return [{"file": "adapter/", "shape": None,
             "what": f"LoRA adapter as a PEFT folder for base model {base}: PeftModel.from_pretrained(base, 'adapter')"}]


def readme(rec: RunRecord, files: list[dict[str, Any]]) -> str:
    lines = [f"Exported by tslrec from its `{rec.stage}` stage run.", "",
             f"run key:  {rec.key}", f"dataset:  {rec.pipeline['data']['dataset']}", f"created:  {rec.created}",
             f"config:   {json.dumps(rec.config, sort_keys=True)}", "",
             "Row i of an item-indexed tensor is internal item i; row 0 is padding. item_ids.tsv gives your id of each row.",
             "Load a tensor: safetensors.torch.load_file('KIND.safetensors')['NAME'] (or numpy.load('KIND.NAME.npy')).", "",
             "files:"]
    for f in files:
        name = f["file"] + (f" [{f['tensor']}]" if "tensor" in f else "")
        shape = f"  shape {tuple(f['shape'])}" if f.get("shape") is not None else ""
        dtype = f" {f['dtype']}" if "dtype" in f else ""
        lines.append(f"- {name}{shape}{dtype}: {f['what']}")
    return "\n".join(lines) + "\n"


def export_run(cache: Cache, rec: RunRecord, out: Path, *, npy: bool = False) -> list[dict[str, Any]]:
    """Write rec's artifacts into out (which must not exist or be empty); return the file list."""
    if out.is_symlink():   # the final rename cannot replace a link (rmdir: "[Errno 20] Not a directory")
        raise ConfigError(f"--out {out}: is a symbolic link; give the folder's own path")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:   # a file (or a link to one) where a parent folder should be
        raise ConfigError(f"--out {out}: cannot create its parent folder ({os_error_line(e)})") from e
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))
    try:
        files = []
        for kind, ref in sorted(rec.outputs.items()):
            if kind in SKIPPED_KINDS:
                continue
            tensors = cache.get(ref)
            files += write_adapter(tmp, tensors) if kind == "adapter" else write_tensors(tmp, kind, tensors, npy)
        data = data_record(cache, rec)
        if data is not None:
            n_items = int(data.result["n_items"])
            files.append(write_id_map(tmp, "item_ids", n_items, id_map(cache, data, "item_ids", n_items)))
            n_users = int(data.result["n_users"])
            users = id_map(cache, data, "user_ids", n_users)
            if users is not None:   # per-user tensors (groups.user_pref) in the user's own ids
                files.append(write_id_map(tmp, "user_ids", n_users, users))
        (tmp / "README.txt").write_text(readme(rec, files))
        readable_by_all(tmp)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return files


def readable_by_all(folder: Path) -> None:
    """One mode for everything exported: folders 0755, files 0644. mkdtemp makes the folder private and
    PEFT's writer left adapter_model.safetensors 0600 beside 0644 files."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def export_cmd(
    key: Optional[str] = typer.Argument(None, help="Run key or a unique prefix of it (see `tslrec cache ls`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create (must not exist, or be empty)."),
    from_: Optional[str] = typer.Option(None, "--from", help="Run record (JSON) instead of KEY; '-' reads stdin."),
    fmt: str = typer.Option("safetensors", "--format", help="'safetensors', or 'npy' to also write one .npy per tensor."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (the files written) on stdout."),
) -> None:
    """Write a run's artifacts to a folder: embeddings, cluster map, PEFT adapter, README.txt.

    \b
    Examples:
      tslrec export 3fa9c1 --out beauty-enhanced/
      tslrec run augment -d beauty --json | tslrec export --from - --out emb/ --format npy
    """
    if fmt not in ("safetensors", "npy"):
        raise typer.BadParameter(f"{fmt!r}: choose safetensors or npy", param_hint="--format")
    cache = Cache(runtime().cache_dir)
    rec = find_record(cache, key, from_)
    files = export_run(cache, rec, out, npy=fmt == "npy")
    err.print(f"exported {rec.stage} run {rec.key[:12]} -> {out} ({len(files)} entries; see README.txt)")
    emit({"out": str(out), "key": rec.key, "stage": rec.stage, "files": files}, as_json, plain=str(out))
