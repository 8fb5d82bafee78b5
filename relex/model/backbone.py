"""Backbones: the tiny local default and everything ``from_pretrained`` can load.

``resolve_backbone(name)`` turns a backbone name into something
``AutoTokenizer.from_pretrained`` / ``AutoModel.from_pretrained`` load:

* ``relex/tiny`` — the embedded default. A WordPiece tokenizer (HF ``tokenizers``: BERT
  normalizer and pre-tokenizer, WordPiece model, ``[CLS] X [SEP]`` post-processor), its
  vocabulary learned from the given corpus (by default the bundled sample's sentences; the
  trainer passes the training split's), is paired with a randomly
  initialised RoBERTa encoder, mirroring ``klue/roberta-base`` (a RoBERTa model with a BERT
  WordPiece tokenizer; special tokens ``[CLS]=0 [PAD]=1 [SEP]=2 [UNK]=3 [MASK]=4``;
  ``type_vocab_size=1``; ``max_position_embeddings=514``). Both are saved to a cache directory
  keyed by the corpus content, the sizes and :data:`BUILD_VERSION`; a second call is a cache
  hit. Sizes come from ``cfg.tiny_hidden / tiny_layers / tiny_heads / tiny_vocab``; the name
  ``relex/tiny-<hidden>x<layers>`` (e.g. ``relex/tiny-256x4``) overrides hidden size and layer
  count. The weights are initialised under a fixed seed (:data:`INIT_SEED`), so the same corpus
  and sizes always give bit-identical weights, whatever the trial's seed.
* a local directory — must hold ``config.json`` (and a tokenizer); returned as is.
* anything else is a model-hub id: accepted when ``AutoConfig`` can load it (from the local HF
  cache, or from the hub when reachable); otherwise :class:`RelexError` in one line.

The tokenizer vocabulary (see :func:`learn_wordpiece_vocab`) is: the five special tokens; the
character alphabet, i.e. every corpus character and every printable ASCII character, each in its
word-initial and its ``##`` continuation form; then up to ``tiny_vocab`` learned subword pieces.
So marker punctuation (``@ # * ^``), the type words of the punct marker styles (``per``, ``org``…)
and every corpus character always tokenize without ``[UNK]``; a character never seen in the
corpus still turns its whole word into ``[UNK]``, as in any WordPiece vocabulary. Learning is
deterministic (``tokenizers``' trainer is not: it breaks ties by hash-map order).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import os
import re
import shutil
import socket
import string
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence
from urllib.parse import urlparse

from relex.errors import RelexError
from relex.io_utils import UMASK, cache_root

if TYPE_CHECKING:  # pragma: no cover
    from relex.config import TrialConfig

TINY = "relex/tiny"
BUILD_VERSION = 2  # bump when the build changes: it is part of the cache key
INIT_SEED = 1234
SPECIAL_TOKENS = ("[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]")
MAX_LENGTH = 512
MAX_WORD_CHARS = 100
_ASCII = string.ascii_letters + string.digits + string.punctuation
META_FILE = "relex_backbone.json"
HUB_PROBE_TIMEOUT_S = 3.0

_TINY_NAME = re.compile(r"^relex/tiny(?:-(\d+)x(\d+))?$")
_DEFAULTS = dict(hidden=128, layers=2, heads=2, vocab=8000)


# ---------------------------------------------------------------------------- public API
def resolve_backbone(
    name: str,
    *,
    corpus: Sequence[str] | None = None,
    cfg: "TrialConfig | None" = None,
    cache_dir: str | os.PathLike | None = None,
) -> str:
    """Return a directory or hub id that ``AutoTokenizer/AutoModel.from_pretrained`` load."""
    if not isinstance(name, str) or not name.strip():
        raise RelexError("backbone: a model name or directory is required")
    name = name.strip()
    if name.startswith("relex/"):
        sizes = tiny_sizes(name, cfg)
        return str(build_tiny(corpus, cache_dir=cache_dir, **sizes))
    return _resolve_pretrained(name)


def load_tokenizer(path: str | os.PathLike):
    """``AutoTokenizer.from_pretrained(path)``; a fast (Rust) tokenizer is required."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - any loader failure is a user-facing problem
        raise RelexError(f"cannot load tokenizer from '{path}': {_short(e)}") from None
    if not getattr(tok, "is_fast", False):
        raise RelexError(f"tokenizer at '{path}' is not a fast tokenizer (offsets are required)")
    return tok


def load_encoder(path: str | os.PathLike, *, pretrained: bool = True):
    """``AutoModel.from_pretrained(path)``: the bare encoder, without any task head.

    With ``pretrained=False`` the same architecture from its ``config.json`` only, randomly
    initialised (for loading a checkpoint's own weights over it).
    """
    from transformers import AutoConfig, AutoModel

    try:
        with quiet_transformers():
            if pretrained:
                return AutoModel.from_pretrained(str(path))
            return AutoModel.from_config(AutoConfig.from_pretrained(str(path)))
    except Exception as e:  # noqa: BLE001
        raise RelexError(f"cannot load backbone '{path}': {_short(e)}") from None


def position_limit(config) -> int | None:
    """How many tokens the encoder's absolute position table can hold (None: no such limit).

    RoBERTa-family models number positions from ``pad_token_id + 1``, so their usable length is
    ``max_position_embeddings - pad_token_id - 1`` (512 for klue/roberta-base and relex/tiny).
    """
    n = getattr(config, "max_position_embeddings", None)
    if not n or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    if config.model_type in ("roberta", "xlm-roberta", "camembert", "roberta-prelayernorm"):
        n -= (config.pad_token_id or 0) + 1
    return int(n)


def check_max_length(config, max_length: int, name: str) -> None:
    """RelexError when ``max_length`` is longer than the backbone's position table."""
    limit = position_limit(config)
    if limit is not None and max_length > limit:
        raise RelexError(f"max_length={max_length} exceeds what backbone '{name}' can encode "
                         f"({limit} positions); use --max-length {limit} or less")


def tiny_sizes(name: str = TINY, cfg: "TrialConfig | None" = None) -> dict[str, int]:
    """Sizes of an embedded backbone: cfg's ``tiny_*`` fields, overridden by ``-<H>x<L>``."""
    m = _TINY_NAME.match(name)
    if not m:
        raise RelexError(
            f"unknown embedded backbone '{name}': use '{TINY}' or '{TINY}-<hidden>x<layers>' "
            f"(e.g. '{TINY}-256x4')"
        )
    sizes = dict(_DEFAULTS)
    if cfg is not None:
        sizes.update(
            hidden=cfg.tiny_hidden, layers=cfg.tiny_layers, heads=cfg.tiny_heads, vocab=cfg.tiny_vocab
        )
    if m.group(1):
        sizes.update(hidden=int(m.group(1)), layers=int(m.group(2)))
    if sizes["hidden"] < 1 or sizes["layers"] < 1 or sizes["heads"] < 1:
        raise RelexError(f"backbone '{name}': hidden size, layers and heads must be positive")
    if sizes["hidden"] % sizes["heads"]:
        raise RelexError(
            f"backbone '{name}': hidden size {sizes['hidden']} is not divisible by "
            f"{sizes['heads']} attention heads (tiny_heads)"
        )
    if sizes["vocab"] < 100:
        raise RelexError(f"backbone '{name}': tiny_vocab={sizes['vocab']} is too small (at least 100)")
    return sizes


def sample_corpus() -> list[str]:
    """The bundled sample's sentences: the default corpus of the tiny tokenizer."""
    from relex.data.sample import SAMPLE_PATH

    rows = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))
    return [r["sentence"] for r in rows]


def tiny_key(corpus: Sequence[str], *, hidden: int, layers: int, heads: int, vocab: int) -> str:
    """Cache key: sha256 of the corpus's distinct sentences (order-free), the sizes, the version."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            dict(v=BUILD_VERSION, seed=INIT_SEED, hidden=hidden, layers=layers, heads=heads, vocab=vocab)
        ).encode()
    )
    for s in _distinct(corpus):
        b = s.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def build_tiny(
    corpus: Sequence[str] | None = None,
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 2,
    vocab: int = 8000,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Build (or find in the cache) a tiny backbone directory and return its path.

    Several processes may build the same key at once: each builds in its own temporary
    directory and renames it into place; the first rename wins and the others use its result.
    """
    if corpus is None:
        corpus = sample_corpus()
    sentences = _distinct(corpus)
    if not sentences:
        raise RelexError("backbone relex/tiny: the tokenizer corpus is empty (no sentences)")
    key = tiny_key(sentences, hidden=hidden, layers=layers, heads=heads, vocab=vocab)
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "backbones"
    target = root / f"tiny-{hidden}x{layers}-{key[:16]}"
    if _complete(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=root))
    os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp is owner-only; a shared cache must stay readable
    try:
        t0 = time.perf_counter()
        tokenizer = _train_tokenizer(sentences, vocab)
        tokenizer.save_pretrained(str(tmp))
        with quiet_transformers():
            _init_encoder(tokenizer, hidden=hidden, layers=layers, heads=heads).save_pretrained(str(tmp))
        meta = dict(
            name=TINY,
            build_version=BUILD_VERSION,
            key=key,
            hidden=hidden,
            layers=layers,
            heads=heads,
            tiny_vocab=vocab,  # cap on learned subword pieces (the alphabet comes on top)
            vocab_size=len(tokenizer),
            init_seed=INIT_SEED,
            corpus_sentences=len(sentences),
            build_seconds=round(time.perf_counter() - t0, 3),
        )
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, target)  # atomic; fails when another builder got there first
        except OSError:
            if not _complete(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------- tiny build
def _distinct(corpus: Sequence[str]) -> list[str]:
    if isinstance(corpus, str):
        raise RelexError("backbone relex/tiny: corpus must be a list of sentences, not one string")
    return sorted({s for s in corpus if isinstance(s, str) and s.strip()})


def _complete(path: Path) -> bool:
    return (path / META_FILE).is_file() and (path / "config.json").is_file()


def _normalizer_and_pretokenizer():
    from tokenizers import normalizers, pre_tokenizers

    # No lowercasing and no accent stripping: stripping decomposes Hangul syllables (NFD) into
    # jamo. klue/roberta-base's tokenizer is cased as well.
    norm = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    return norm, pre_tokenizers.BertPreTokenizer()


def learn_wordpiece_vocab(
    sentences: Sequence[str],
    merges: int,
    *,
    min_frequency: int = 2,
    prefix: str = "##",
    max_word_chars: int = MAX_WORD_CHARS,
) -> list[str]:
    """Learn a WordPiece vocabulary, deterministically (without the special tokens).

    The character alphabet comes first: every character of the corpus and every printable
    ASCII character, each in its word-initial form and its ``##`` continuation form, ordered by
    frequency then text. Then up to ``merges`` subword pieces learned BPE-style (as the
    ``tokenizers`` WordPiece trainer does): repeatedly merge the most frequent adjacent pair
    of symbols within words (at least ``min_frequency`` occurrences); ties go to the smallest
    pair in text order, so the result depends only on the set of distinct sentences (a
    sentence repeated for several entity pairs counts once).
    (``tokenizers``' own trainer breaks ties by hash-map order, which differs between runs.)
    """
    norm, pre = _normalizer_and_pretokenizer()
    counts: Counter[str] = Counter()
    for s in _distinct(sentences):
        counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(s)))
    alphabet: Counter[str] = Counter({c: 0 for c in _ASCII})
    for w, f in counts.items():
        for c in w:
            alphabet[c] += f
    vocab = [p for c in sorted(alphabet, key=lambda c: (-alphabet[c], c)) for p in (c, prefix + c)]
    seen = set(vocab)

    # Symbols are ints (names[id] is the text); a pair (a, b) is the int a * shift + b.
    names = list(vocab)
    ids = {p: i for i, p in enumerate(names)}
    shift = 1 << 32
    words: list[list[int]] = []
    freqs: list[int] = []
    for w in sorted(counts):
        if 1 < len(w) <= max_word_chars:
            words.append([ids[w[0]]] + [ids[prefix + c] for c in w[1:]])
            freqs.append(counts[w])
    pair_count: dict[int, int] = defaultdict(int)
    where: dict[int, list[int]] = defaultdict(list)  # pair -> words that may hold it
    for i, syms in enumerate(words):
        for a, b in zip(syms, syms[1:]):
            k = a * shift + b
            pair_count[k] += freqs[i]
            where[k].append(i)
    # max count first; ties to the smallest pair in text order
    heap = [(-c, names[k // shift], names[k % shift], k) for k, c in pair_count.items()]
    heapq.heapify(heap)
    learned = 0
    while learned < merges and heap:
        neg, _, _, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:
            continue  # stale entry; the current count was pushed again when it changed
        if -neg < min_frequency:
            break
        a, b = divmod(pair, shift)
        text = names[a] + names[b][len(prefix):]
        if text not in seen:
            vocab.append(text)
            seen.add(text)
            learned += 1
        new = ids.get(text)
        if new is None:
            new = ids[text] = len(names)
            names.append(text)
        # Only pairs that touch the new symbol can appear; the others only lose counts.
        delta: dict[int, int] = defaultdict(int)
        for i in set(where.pop(pair)):
            syms = words[i]
            out: list[int] = []
            j, n = 0, len(syms)
            while j < n:
                if j + 1 < n and syms[j] == a and syms[j + 1] == b:
                    out.append(new)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            if len(out) == n:
                continue  # the pair left this word through an earlier merge
            f = freqs[i]
            for x, y in zip(syms, syms[1:]):
                delta[x * shift + y] -= f
            for x, y in zip(out, out[1:]):
                k = x * shift + y
                delta[k] += f
                if x == new or y == new:
                    where[k].append(i)
            words[i] = out
        pair_count.pop(pair, None)
        for k, d in delta.items():
            if d == 0 or k == pair:
                continue
            c = pair_count.get(k, 0) + d
            if c > 0:
                pair_count[k] = c
                heapq.heappush(heap, (-c, names[k // shift], names[k % shift], k))
            else:
                pair_count.pop(k, None)
                where.pop(k, None)
    return vocab


def _train_tokenizer(sentences: list[str], merges: int):
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    pieces = list(SPECIAL_TOKENS) + learn_wordpiece_vocab(sentences, merges)
    vocab = {p: i for i, p in enumerate(pieces)}
    tok = Tokenizer(
        models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=MAX_WORD_CHARS)
    )
    tok.normalizer, tok.pre_tokenizer = _normalizer_and_pretokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    # All segments get type id 0: the encoder has type_vocab_size=1, like klue/roberta-base.
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
        model_max_length=MAX_LENGTH,
    )


def _init_encoder(tokenizer, *, hidden: int, layers: int, heads: int):
    import torch
    from transformers import RobertaConfig, RobertaModel

    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=MAX_LENGTH + 2,  # RoBERTa positions start after pad_token_id
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        model = RobertaModel(config)
    model.eval()
    return model


# ---------------------------------------------------------------------------- other names
def _looks_like_path(name: str) -> bool:
    """A name meant as a filesystem path (a hub id is ``name`` or ``owner/name``)."""
    return (
        name.startswith(("./", "../", "/", "~", ".\\", "..\\"))
        or "\\" in name
        or name.count("/") > 1
    )


def _resolve_pretrained(name: str) -> str:
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise RelexError(
                f"cannot load backbone '{name}': the directory has no config.json "
                "(expected a save_pretrained() directory with config.json and tokenizer files)"
            )
        return str(p)
    if p.exists():
        raise RelexError(f"cannot load backbone '{name}': it is a file, not a model directory")
    if _looks_like_path(name):
        raise RelexError(f"cannot load backbone '{name}': no such directory")

    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except Exception as e:  # noqa: BLE001
        raise RelexError(f"cannot load backbone '{name}': not a directory or a valid model-hub id ({_short(e)})") from None

    from transformers import AutoConfig

    # 1) the local Hugging Face cache (works offline, returns at once)
    try:
        AutoConfig.from_pretrained(name, local_files_only=True)
        return name
    except Exception:  # noqa: BLE001
        pass
    # 2) the hub, only when it is allowed and answers quickly (no multi-retry stall)
    prefix = f"cannot load backbone '{name}': not found locally and the model hub is unreachable or has no such model"
    reason = _hub_unreachable()
    if reason:
        raise RelexError(f"{prefix} ({reason})")
    try:
        AutoConfig.from_pretrained(name)
    except Exception as e:  # noqa: BLE001
        raise RelexError(f"{prefix} ({_short(e)})") from None
    return name


def _hub_unreachable() -> str | None:
    """A short reason when the hub cannot be asked now, else None."""
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return "HF_HUB_OFFLINE is set"
        endpoint = constants.ENDPOINT
    except Exception:  # noqa: BLE001
        endpoint = "https://huggingface.co"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var} is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy a direct probe proves nothing; let the hub client decide
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            return None
    except OSError as e:
        return f"cannot connect to {host}: {e.strerror or type(e).__name__}"


@contextlib.contextmanager
def quiet_transformers():
    """Hide transformers' per-call progress bars (weights loading/saving) for a moment."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
