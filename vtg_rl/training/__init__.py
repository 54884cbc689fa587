"""What every training recipe shares, whatever the model family: exact checkpoint loading and resume
(:mod:`~vtg_rl.training.checkpoints`, :mod:`~vtg_rl.training.resume`), YAML + flag configuration
(:mod:`~vtg_rl.training.config`), the synthetic world fallback (:mod:`~vtg_rl.training.world`) and the plots and
JSON a run writes (:mod:`~vtg_rl.training.artifacts`). Both model families import it; it imports neither."""
