"""Layer-wise learning-rate decay (LLRD) parameter groups for AdamW.

With ``L`` encoder layers numbered 1 (lowest) … L (top) and decay ``d``:

- encoder layer ``k`` gets ``lr · d^(L−k)`` (the top layer gets ``lr``);
- the embeddings — every encoder parameter outside the layer list whose name contains
  ``embed`` (word/position/token-type embeddings, their LayerNorm, ELECTRA's
  ``embeddings_project``) — and the model's ERPE tables get ``lr · d^L``, one step below layer 1;
- everything else gets the head rate ``head_lr`` (default ``lr``): the classification head and
  encoder parameters above the layers (BERT's pooler, a final norm).

``d = 1`` gives every group the same rate. Weight decay is ``weight_decay`` except for biases
and normalisation weights (LayerNorm/RMSNorm modules, or a name containing ``norm``), which get
0. Each group carries a ``name`` (``embeddings``, ``layer_3``, ``head``, plus ``/no_decay``).

The layer list is ``encoder.layer`` (BERT, RoBERTa, XLM-R, ELECTRA), ``transformer.layer``
(DistilBERT) or ``layers``; failing those, the one ``nn.ModuleList`` of
``config.num_hidden_layers`` identical blocks. A model where none is found raises RelexError
when ``d < 1`` (with ``d = 1`` no layer list is needed).
"""

from __future__ import annotations

from torch import nn

from relex.errors import RelexError
from relex.train.techniques import Technique

_KNOWN_PATHS = ("encoder.layer", "encoder.layers", "transformer.layer", "transformer.layers",
                "layers", "layer", "encoder.block", "block")


def _get(module: nn.Module, path: str):
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def find_layers(encoder: nn.Module) -> tuple[str, nn.ModuleList]:
    """(dotted name, ModuleList) of the encoder's transformer layers, bottom first."""
    n = getattr(getattr(encoder, "config", None), "num_hidden_layers", None)
    for path in _KNOWN_PATHS:
        mod = _get(encoder, path)
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n is None or len(mod) == n):
            return path, mod
    candidates = []
    for name, mod in encoder.named_modules():
        if (isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n is None or len(mod) == n)
                and len({type(m) for m in mod}) == 1):
            candidates.append((name, mod))
    # a list nested inside another candidate is part of a layer, not the layer list
    outer = [c for c in candidates
             if not any(c[0] != o[0] and c[0].startswith(o[0] + ".") for o in candidates)]
    if len(outer) == 1:
        return outer[0]
    what = type(encoder).__name__
    found = ", ".join(c[0] for c in outer) if outer else "none"
    raise RelexError(
        f"llrd: cannot find the transformer layer list of {what} (expected a ModuleList of "
        f"{n} layers; candidates: {found}); use llrd=1 with this backbone")


def _no_decay(name: str, param: nn.Parameter, norm_params: set[int]) -> bool:
    return (name.endswith("bias") or id(param) in norm_params or "norm" in name.lower()
            or param.dim() < 1)


def param_groups(model: nn.Module, lr: float, decay: float = 1.0, weight_decay: float = 0.0,
                 head_lr: float | None = None) -> list[dict]:
    """AdamW parameter groups for a :class:`RelexModel` (see the module doc for the rule)."""
    if not (0 < decay <= 1):
        raise ValueError(f"llrd decay must be in (0, 1], got {decay}")
    head_lr = lr if head_lr is None else head_lr
    encoder = model.encoder
    norm_params = {id(p) for m in model.modules()
                   if isinstance(m, nn.LayerNorm) or "norm" in type(m).__name__.lower()
                   for p in m.parameters(recurse=False)}

    layer_of: dict[int, int] = {}  # id(param) -> layer number 1..L
    L = 0
    try:
        _, layers = find_layers(encoder)
    except RelexError:
        if decay < 1:
            raise
        layers = None
    if layers is not None:
        L = len(layers)
        for k, layer in enumerate(layers, start=1):
            for p in layer.parameters():
                layer_of.setdefault(id(p), k)

    groups: dict[tuple[str, bool], dict] = {}
    order: list[tuple[str, bool]] = []

    def add(group: str, rate: float, name: str, p: nn.Parameter) -> None:
        nd = _no_decay(name, p, norm_params)
        key = (group, nd)
        if key not in groups:
            groups[key] = {"params": [], "lr": rate, "weight_decay": 0.0 if nd else weight_decay,
                           "name": group + ("/no_decay" if nd else "")}
            order.append(key)
        groups[key]["params"].append(p)

    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if name.startswith("encoder."):
            k = layer_of.get(id(p))
            if k is not None:
                add(f"layer_{k}", lr * decay ** (L - k), name, p)
            elif "embed" in name[len("encoder."):].lower():
                add("embeddings", lr * decay ** L, name, p)
            else:
                add("head", head_lr, name, p)
        elif name.startswith("erpe."):
            add("embeddings", lr * decay ** L, name, p)
        else:
            add("head", head_lr, name, p)

    def rank(key):
        g = key[0]
        if g == "embeddings":
            return (0, 0, key[1])
        if g.startswith("layer_"):
            return (1, int(g[6:]), key[1])
        return (2, 0, key[1])

    return [groups[k] for k in sorted(order, key=rank)]


class LLRD(Technique):
    """The optimizer seam: always on; at ``llrd=1`` every layer gets the same rate and only the
    weight-decay split (none on biases and norms) remains."""

    @classmethod
    def enabled(cls, cfg) -> bool:
        return True

    def param_groups(self, model) -> list[dict]:
        return param_groups(model, self.cfg.lr, self.cfg.llrd, self.cfg.weight_decay)
