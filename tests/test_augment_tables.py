import json
from pathlib import Path

import pytest
import torch

from seit.augment import AugmentError, load_codebook, load_synonyms, synonyms_from_codebook

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"


def test_release_tables_load_and_synonyms_are_cosine_neighbours():
    codebook = load_codebook(TOKENS / "codebook.ckpt")
    synonyms = load_synonyms(TOKENS / "synonyms.json")
    assert codebook.shape == (391, 32) and codebook.dtype == torch.float32
    assert synonyms.shape == (391, 10) and (synonyms[:, 0] == torch.arange(391)).all()
    torch.testing.assert_close(synonyms_from_codebook(codebook, 10), synonyms)


def test_bad_tables_name_the_file(tmp_path):
    bad = tmp_path / "synonyms.json"
    bad.write_text("{not json")
    with pytest.raises(AugmentError, match=r"synonyms\.json: cannot read"):
        load_synonyms(bad)
    bad.write_text(json.dumps({"0": [0, 1], "2": [2, 0]}))
    with pytest.raises(AugmentError, match=r"no synonyms for codes \[1\]"):
        load_synonyms(bad)
    bad.write_text(json.dumps({"0": [0, 5], "1": [1, 0]}))
    with pytest.raises(AugmentError, match="must lie in"):
        load_synonyms(bad)
    flat = tmp_path / "codebook.ckpt"
    torch.save(torch.zeros(391), flat)
    with pytest.raises(AugmentError, match=r"codebook.ckpt: expected a float \[num_codes, dim\]"):
        load_codebook(flat)
