from pathlib import Path

import torch

from seit.augment import synonyms_from_codebook
from seit.interop.seit_release import read_codebook, read_synonyms

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"


def test_synonyms_are_the_release_tables_cosine_neighbours():
    codebook = torch.from_numpy(read_codebook(TOKENS / "codebook.ckpt"))
    synonyms = torch.from_numpy(read_synonyms(TOKENS / "synonyms.json", 391))
    assert synonyms.shape == (391, 10) and (synonyms[:, 0] == torch.arange(391)).all()
    torch.testing.assert_close(synonyms_from_codebook(codebook, 10), synonyms)
