"""Benchmark 3: featurizing the whole KLUE-RE training file (32,470 rows), cold and from cache.

``relex.data.features.featurize`` (markers inserted by offsets, one batch call of the fast
tokenizer, entity token positions, windowing of over-long rows, the cache key, the ``.npz``
write) is timed with a fresh cache directory (a miss), then again (a hit). Each call starts
from a data set whose ``content_hash`` is not yet computed, as in a fresh process, so hashing
the rows — part of the cache key — is in both figures.

Baseline, measured in the same run on the same marked texts (marking itself not timed, which
favours the baseline): the Hugging Face per-row way, ``tokenizer(text, truncation=True,
max_length=256)`` in a Python loop. A single batched ``tokenizer(texts)`` call is shown too:
the floor of the tokenizer work alone.

Targets: featurize ≤ 2 s, cache hit ≤ 0.3 s.

    .venv/bin/python bench/features.py [--quick] [--data FILE]
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common as C

TARGET_COLD_S = 2.0
TARGET_HIT_S = 0.3


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    ts = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts


def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--styles", default="typed_entity_marker_punct,typed_entity_marker")
    args = p.parse_args(argv)
    data = C.require_data(args.data)
    C.set_threads(args.threads)
    info = C.machine()
    C.print_machine(info)

    from relex.data import markers
    from relex.data.features import featurize
    from relex.model.backbone import load_tokenizer

    ds = C.load_klue(data)
    if args.quick:
        ds = ds.subset(range(3000))
        args.repeats = 2
    backbone = C.tiny_backbone(ds)
    print(f"data: {len(ds)} rows of {data.name}; backbone {backbone}; max_length {args.max_length}")
    f = ds.frame
    results = {}
    rows = []
    for style in args.styles.split(","):
        tok = load_tokenizer(backbone)
        markers.prepare_tokenizer(tok, style, markers.entity_types(ds))
        texts = markers.mark_many(f["sentence"].tolist(), f["subj_start"], f["subj_end"],
                                  f["subj_type"].tolist(), f["obj_start"], f["obj_end"],
                                  f["obj_type"].tolist(), style).texts

        def fresh():
            ds.__dict__.pop("content_hash", None)  # as in a new process: hash not computed yet

        with tempfile.TemporaryDirectory(prefix="relex-bench-") as tmp:
            dirs = iter(range(10_000))

            def cold():
                fresh()
                return featurize(ds, tok, style, args.max_length, cache_dir=Path(tmp) / str(next(dirs)))

            def hit():
                fresh()
                feats = featurize(ds, tok, style, args.max_length, cache_dir=Path(tmp) / "0")
                assert feats.from_cache, "expected a cache hit"
                return feats

            def nocache():
                featurize(ds, tok, style, args.max_length, use_cache=False)

            def per_row():
                for t in texts:
                    tok(t, truncation=True, max_length=args.max_length)

            def batched():
                tok(texts, truncation=True, max_length=args.max_length)

            t_cold, all_cold = timed(cold, args.repeats)
            t_hit, all_hit = timed(hit, max(args.repeats, 5))
            t_nocache, _ = timed(nocache, args.repeats)
            t_row, all_row = timed(per_row, args.repeats)
            t_batch, _ = timed(batched, args.repeats)
        fresh()
        t_hash, _ = timed(lambda: (fresh(), ds.content_hash), args.repeats)
        feats = featurize(ds, tok, style, args.max_length, use_cache=False)
        results[style] = dict(cold_s=t_cold, cold_all=all_cold, hit_s=t_hit, hit_all=all_hit,
                              featurize_nocache_s=t_nocache, hash_s=t_hash, per_row_s=t_row,
                              per_row_all=all_row, batched_s=t_batch, rows=len(ds),
                              mean_tokens=float(feats.lengths.mean()), windowed=feats.n_windowed)
        rows += [
            [style, "featurize (cache miss)", t_cold, f"{t_row / t_cold:.1f}x faster",
             f"≤ {TARGET_COLD_S:g} s", C.verdict(t_cold, TARGET_COLD_S, higher_is_better=False)],
            ["", "featurize (cache hit)", t_hit, f"{t_row / t_hit:.1f}x faster",
             f"≤ {TARGET_HIT_S:g} s", C.verdict(t_hit, TARGET_HIT_S, higher_is_better=False)],
            ["", "  of which content hash", t_hash, "", "", ""],
            ["", "featurize, no cache", t_nocache, f"{t_row / t_nocache:.1f}x faster", "", ""],
            ["", "baseline: per-row tokenizer()", t_row, "1.0x", "", ""],
            ["", "batched tokenizer(texts)", t_batch, f"{t_row / t_batch:.1f}x faster", "", ""],
        ]
        print(f"  {style}: cold {t_cold:.2f}s, hit {t_hit:.3f}s, per-row baseline {t_row:.2f}s; "
              f"{feats.lengths.mean():.1f} tokens/row, {feats.n_windowed} rows windowed", flush=True)
    print()
    print(C.table(rows, ["style", "what", "seconds (median)", "vs per-row baseline", "target", "met?"]))
    C.write_json(args.json, {"machine": info, "args": vars(args), "results": results,
                             "load_avg_1m_end": os.getloadavg()[0]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
