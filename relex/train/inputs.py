"""Model inputs of a run: the tokenizer prepared for the marker style, then both splits
featurized — the one sequence the trainer and the sweep's pre-flight share, so trials find
exactly the features the pre-flight cached."""

from __future__ import annotations

import os


def tokenizer_and_features(cfg, train_ds, valid_ds, backbone_path: str | os.PathLike,
                           cache_dir: str | os.PathLike):
    """``(tokenizer, train_features, valid_features)``; a ``max_length`` the backbone cannot
    encode fails first, before any featurizing."""
    from transformers import AutoConfig

    from relex.data.features import featurize
    from relex.data.markers import entity_types, prepare_tokenizer
    from relex.model.backbone import check_max_length, load_tokenizer
    from relex.model.quiet import quiet_transformers

    with quiet_transformers():
        check_max_length(AutoConfig.from_pretrained(str(backbone_path)), cfg.max_length, cfg.backbone)
    tokenizer = load_tokenizer(backbone_path)
    prepare_tokenizer(tokenizer, cfg.marker, entity_types(train_ds, valid_ds))
    feats = [featurize(ds, tokenizer, cfg.marker, cfg.max_length, cache_dir=cache_dir)
             for ds in (train_ds, valid_ds)]
    return tokenizer, feats[0], feats[1]
