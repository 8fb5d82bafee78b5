"""Training: ``fit()``, its one step, resumable state, checkpoints, inference, techniques.

Modules (each small, each one job)::

    fit.py         fit(): prepare a Run, loop over epochs, evaluate, keep the best
    step.py        train_step(): forward → loss → backward → hooks → clip → optimizer → schedule
    state.py       save()/load() of anything with state_dict(): safetensors + JSON, no pickle
    checkpoint.py  the best checkpoint: save(), load() → Loaded(model, tokenizer, cfg, labels)
    predict.py     predict_probs() (features) and dataset_probs() (a Dataset), the one inference path
    inputs.py      tokenizer → features, shared with the sweep pre-flight
    progress.py    the progress display
    techniques/    one module per technique behind one interface (techniques/__init__.py)
    amp.py         mixed precision
    commands.py    relex train / evaluate / predict

The public seams, stable for code built on relex:

* **Techniques.** Subclass :class:`relex.train.techniques.Technique` in a new module of
  ``relex/train/techniques/`` and add its switch to ``relex.config.TrainingConfig``; nothing else
  changes (flags, help, job files and leaderboard columns follow the config). The hooks and the
  worked EMA example are in ``relex/train/techniques/__init__.py``.
* **Loading a checkpoint.** ``relex.train.checkpoint.load(path, device=None)`` returns
  ``Loaded(model, tokenizer, cfg, labels)``; it loads checkpoints of other relex versions (unknown
  training keys ignored with one warning line).
* **Prediction.** ``relex.train.predict.dataset_probs(loaded, dataset)`` → (N, C) float64
  probabilities, columns in ``loaded.labels.names`` order; ``predict_probs(model, features)``
  for features already built.
* **Per-evaluation hook.** ``relex.train.fit.fit(..., on_evaluate=f)`` calls ``f(ev)`` after every evaluation
  with an :class:`~relex.train.fit.EvalEvent`: ``step``, ``epoch``, ``metrics`` (micro_f1,
  auprc, accuracy, val_loss, train_loss, lr), ``is_best``, the best so far, ``best_dir``,
  ``probs`` (validation probabilities) and ``state`` (the resumable state written then, or None).
  Tracker loggers and the sweep's trial reporting hook in here.

Import what you use from its module (``from relex.train.fit import fit, EvalEvent``): the
package itself imports nothing, so ``import relex.train`` (as the CLI does to build its parser)
does not import torch.
"""

