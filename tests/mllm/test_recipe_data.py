"""The LLM recipes read the moment-retrieval releases through the loaders and refuse highlight-only data."""

from __future__ import annotations

from pathlib import Path

import pytest

from vtg_rl.data.loaders import load_samples
from vtg_rl.data.schema import write_jsonl
from vtg_rl.mllm.recipe_common import DataArguments, load_split

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.mark.parametrize("dataset, path", [("activitynet", "activitynet/val_1.json"),
                                           ("ego4d-nlq", "ego4d-nlq/nlq_val.json")])
def test_moment_retrieval_releases_load_for_the_llm_recipes(dataset, path):
    data = DataArguments(dataset=dataset, dataset_path=str(FIXTURES / path), probe_videos=False,
                         data_policy="drop", max_train_samples=None)
    samples = load_split(data, "train")
    assert samples and all(s.windows for s in samples)


def test_highlight_only_samples_are_refused_with_the_recipe_to_use(tmp_path):
    samples, _ = load_samples(FIXTURES / "tvsum" / "tvsum_val.jsonl", "tvsum")
    path = tmp_path / "tvsum_unified.jsonl"
    write_jsonl(samples, path)
    data = DataArguments(dataset="unified", dataset_path=str(path), probe_videos=False)
    with pytest.raises(ValueError, match="highlight-only.*r2_tuning"):
        load_split(data, "train")
