"""Small grounding heads trained on frozen CLIP features: GIRL-DETR, its RL post-training TPRL, and R2-Tuning.

Layout, by concern and model family (importing this package imports nothing else; import the module you
need):

* shared by every head: :mod:`~vtg_rl.heads.protocol` (what a head returns and how its queries are
  ranked; **read this first**), :mod:`~vtg_rl.heads.span_losses` (span maths of the losses, TPRL and
  decoding), :mod:`~vtg_rl.heads.features` / :mod:`~vtg_rl.heads.features_cli` (frozen-CLIP feature
  extraction, ``vtg-rl features``), :mod:`~vtg_rl.heads.feature_dataset` (features -> batches),
  :mod:`~vtg_rl.heads.predictions` (decode, write and score windows), :mod:`~vtg_rl.heads.grounder`
  (``head_config.json``), :mod:`~vtg_rl.heads.trainer` (the ``Trainer`` base and shared options) and
  :mod:`~vtg_rl.heads.recipe` (data, CLIP and resume helpers of the recipes);
* :mod:`vtg_rl.heads.girl_detr`: the DETR head (``model``, ``matcher``, ``losses``), its supervised
  ``trainer`` and ``recipe`` (``recipes/girl_detr.py``) and its raw-video ``grounder``;
* :mod:`vtg_rl.heads.tprl`: gradient-isolated progressive RL on a frozen backbone for any head that follows
  the protocol (``loss``, ``trainer`` with the supervised control arm, ``recipe``: ``recipes/tprl.py``);
* :mod:`vtg_rl.heads.r2_tuning`: the side adapter on a frozen CLIP's last layers (``model``, ``block``,
  ``heads``, ``losses``, ``features``, ``trainer``, ``recipe``: ``recipes/r2_tuning.py``, ``grounder``).

The families never import each other except where one builds on another: TPRL post-trains GIRL-DETR heads
(and its control arm is GIRL-DETR's supervised loss), and R2-Tuning runs TPRL on its moment head.
"""
