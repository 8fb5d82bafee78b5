"""ONNX export: a checkpoint's encoder and head as one graph, for serving without PyTorch.

The graph takes the arrays relex's featurization produces (``CheckpointPredictor.encode``
gives them for records in memory), all int64:

    input_ids, attention_mask   (batch, sequence)
    subj_pos, obj_pos           (batch,)      the entity marker positions
    subj_span, obj_span         (batch, 2)    the entity token spans (inclusive)
    subj_dist, obj_dist         (batch, sequence)   only for a model with ERPE

and returns ``logits`` and ``probs`` (batch, labels), with batch and sequence dynamic. The
label names (in column order), the negative label and the marker style are stored in the
model's metadata (``labels``, ``negative_label``, ``marker``, ``max_length``), readable with
``onnxruntime.InferenceSession(...).get_modelmeta().custom_metadata_map``.

Needs the ``onnx`` extra (``pip install 'relex[onnx]'``: onnx, onnxscript for torch's exporter,
onnxruntime to run the result).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from relex.errors import RelexError

BASE_INPUTS = ("input_ids", "attention_mask", "subj_pos", "obj_pos", "subj_span", "obj_span")
ERPE_INPUTS = ("subj_dist", "obj_dist")
OUTPUTS = ("logits", "probs")
OPSET = 18
# module -> distribution, for the one-line message when the extra is missing
_NEEDS = {"onnx": "onnx", "onnxscript": "onnxscript"}


def input_names(cfg) -> tuple[str, ...]:
    """The graph's inputs for a model of config ``cfg``."""
    return BASE_INPUTS + (ERPE_INPUTS if cfg.erpe else ())


def require_onnx() -> None:
    missing = [dist for module, dist in _NEEDS.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise RelexError(f"--onnx needs {' and '.join(missing)}: pip install 'relex[onnx]'")


def _graph(model, names: tuple[str, ...]):
    """The model as a module of positional tensors (what torch.onnx traces)."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, subj_pos, obj_pos, subj_span, obj_span,
                    subj_dist=None, obj_dist=None):
            given = locals()
            logits = self.model({k: given[k] for k in names}).float()
            return logits, torch.softmax(logits, dim=-1)

    return Graph().eval()


def _example(cfg, n: int = 2, length: int = 12) -> dict[str, Any]:
    """A small batch with valid positions, spans and distances (any values the graph accepts)."""
    import torch

    batch = {
        "input_ids": torch.full((n, length), 5, dtype=torch.long),
        "attention_mask": torch.ones((n, length), dtype=torch.long),
        "subj_pos": torch.full((n,), 1, dtype=torch.long),
        "obj_pos": torch.full((n,), 5, dtype=torch.long),
        "subj_span": torch.tensor([[1, 3]] * n, dtype=torch.long),
        "obj_span": torch.tensor([[5, 7]] * n, dtype=torch.long),
    }
    if cfg.erpe:
        batch["subj_dist"] = torch.full((n, length), cfg.erpe_clip, dtype=torch.long)
        batch["obj_dist"] = torch.full((n, length), cfg.erpe_clip, dtype=torch.long)
    return batch


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Write ``checkpoint`` as one ONNX graph to ``out`` (atomically); return its description."""
    require_onnx()
    import onnx
    import torch

    from relex.io_utils import atomic_path
    from relex.model.quiet import quiet_transformers
    from relex.train import checkpoint as ckpt

    model, _tokenizer, cfg, labels = ckpt.load(checkpoint, device="cpu")
    names = input_names(cfg)
    example = _example(cfg)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq},
              "subj_pos": {0: batch}, "obj_pos": {0: batch}, "subj_span": {0: batch},
              "obj_span": {0: batch}, "subj_dist": {0: batch, 1: seq}, "obj_dist": {0: batch, 1: seq}}
    meta = {"labels": json.dumps(list(labels.names), ensure_ascii=False),
            "negative_label": labels.negative, "marker": cfg.marker,
            "max_length": str(cfg.max_length), "config": cfg.to_json()}
    out = Path(out)
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed", about ops relex never uses
    try:
        with quiet_transformers(), warnings.catch_warnings(), atomic_path(out) as tmp:
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _graph(model, names), tuple(example[k] for k in names), dynamo=True,
                input_names=list(names), output_names=list(OUTPUTS), opset_version=OPSET,
                dynamic_shapes={k: shapes[k] for k in names}, external_data=False, verbose=False)
            proto = program.model_proto
            onnx.helper.set_model_props(proto, meta)
            onnx.save_model(proto, str(tmp))
    finally:
        onnx_log.setLevel(level)
    return {"path": str(out), "inputs": list(names), "outputs": list(OUTPUTS),
            "labels": list(labels.names)}
