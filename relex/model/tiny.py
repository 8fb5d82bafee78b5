"""The embedded default backbone ``relex/tiny``: built from a corpus, offline, cached.

A WordPiece tokenizer (HF ``tokenizers``: BERT
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

The tokenizer vocabulary (see :func:`learn_wordpiece_vocab`) is: the five special tokens; the
character alphabet, i.e. every corpus character and every printable ASCII character, each in its
word-initial and its ``##`` continuation form; then up to ``tiny_vocab`` learned subword pieces.
So marker punctuation (``@ # * ^``), the type words of the punct marker styles (``per``, ``org``…)
and every corpus character always tokenize without ``[UNK]``; a character never seen in the
corpus still turns its whole word into ``[UNK]``, as in any WordPiece vocabulary. Learning is
deterministic (``tokenizers``' trainer is not: it breaks ties by hash-map order).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import re
import shutil
import string
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from relex.errors import RelexError
from relex.io_utils import UMASK, cache_root

if TYPE_CHECKING:  # pragma: no cover
    from relex.config import ModelConfig

TINY = "relex/tiny"
BUILD_VERSION = 2  # bump when the build changes: it is part of the cache key
INIT_SEED = 1234
SPECIAL_TOKENS = ("[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]")
MAX_LENGTH = 512
MAX_WORD_CHARS = 100
_ASCII = string.ascii_letters + string.digits + string.punctuation
META_FILE = "relex_backbone.json"

_TINY_NAME = re.compile(r"^relex/tiny(?:-(\d+)x(\d+))?$")
_DEFAULTS = dict(hidden=128, layers=2, heads=2, vocab=8000)


def tiny_sizes(name: str = TINY, cfg: "ModelConfig | None" = None) -> dict[str, int]:
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
        from relex.model.quiet import quiet_transformers

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
