import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seit.augment import synonyms_from_codebook
from seit.cli import main
from seit.interop.seit_release import import_seit, read_synonyms
from seit.store import StoreError, StoreWriter, TokenStore, verify_store
from seit.store.codes import add_synonyms, code_lookup, prune_store

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"
FULL = 40  # codes of the "tokenizer" these stores pretend to come from


def nearest_kept(full: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Reference: the row (in kept) of every id, by a plain loop over cosine similarities."""
    unit = full / np.linalg.norm(full, axis=1, keepdims=True)
    out = []
    for i in range(len(full)):
        if i in kept:
            out.append(int(np.flatnonzero(kept == i)[0]))
        else:
            out.append(int(np.argmax([unit[i] @ unit[k] for k in kept])))
    return np.array(out)


@pytest.fixture(scope="module")
def full_codebook():
    book = np.random.default_rng(0).normal(size=(FULL, 6)).astype(np.float32)
    return book / np.linalg.norm(book, axis=1, keepdims=True)


def write_tokens(path, ids, codebook, code_ids=None, labels=None, synonyms=None):
    n = len(ids)
    with StoreWriter(
        path,
        grid_shape=ids.shape[1:],
        codebook_size=len(codebook),
        codebook=codebook,
        code_ids=code_ids,
        synonyms=synonyms,
        shard_bytes=100,
        class_names=["x", "y", "z"],
    ) as w:
        w.append_batch(ids, labels if labels is not None else np.arange(n) % 3, [f"k{i:03d}" for i in range(n)])
    return TokenStore.open(path)


def test_code_lookup_keeps_kept_codes_and_sends_the_others_to_the_nearest(full_codebook):
    kept = np.array([2, 5, 11, 17, 30, 31, 39])
    book = full_codebook.copy()
    book[8] = 3.0 * book[17]  # same direction as a kept code, other length: cosine says it is that code
    lookup = code_lookup(kept, torch.from_numpy(book))
    assert lookup.dtype == torch.long and lookup.shape == (FULL,)
    np.testing.assert_array_equal(lookup.numpy(), nearest_kept(book, kept))
    np.testing.assert_array_equal(lookup[kept].numpy(), np.arange(len(kept)))
    assert lookup[8] == 3  # row of code 17
    np.testing.assert_array_equal(code_lookup(kept, book, chunk_rows=3), lookup)  # chunking changes nothing
    with pytest.raises(StoreError, match="another tokenizer"):
        code_lookup([3, 40], book)
    with pytest.raises(StoreError, match="distinct"):
        code_lookup([3, 3], book)


def test_prune_keeps_used_codes_in_tokenizer_order(tmp_path, full_codebook, capsys):
    rng = np.random.default_rng(1)
    used = np.array([3, 9, 10, 22, 37])
    ids = rng.choice(used, size=(30, 4, 4))
    full = write_tokens(
        tmp_path / "full", ids, full_codebook, code_ids=np.arange(FULL), synonyms=np.zeros((FULL, 4), dtype=int)
    )
    result = prune_store(tmp_path / "full", tmp_path / "pruned")
    pruned = TokenStore.open(tmp_path / "pruned")
    np.testing.assert_array_equal(pruned.code_ids, used)
    stored = pruned.get_batch(range(30))[0]
    np.testing.assert_array_equal(pruned.code_ids[stored], ids)  # back through code_ids: the original ids
    np.testing.assert_array_equal(pruned.codebook, full_codebook[used])
    assert pruned.keys == full.keys and np.array_equal(pruned.labels, full.labels)
    assert pruned.synonyms.shape == (5, 4)  # rebuilt for the new ids, as wide as the old table
    np.testing.assert_array_equal(pruned.synonyms, synonyms_from_codebook(torch.from_numpy(pruned.codebook), 4))
    assert (result.source_codes, result.codes, result.codes_used, result.mapped_tokens) == (FULL, 5, 5, 0)
    assert pruned.config["prune"]["codes_used"] == 5
    verify_store(tmp_path / "pruned", show_progress=False)

    # pruning a pruned store composes: code_ids still name tokenizer codes
    again = write_tokens(tmp_path / "sub", stored[:, :2] % 3, pruned.codebook, code_ids=pruned.code_ids)
    prune_store(tmp_path / "sub", tmp_path / "sub-pruned")
    twice = TokenStore.open(tmp_path / "sub-pruned")
    np.testing.assert_array_equal(twice.code_ids[twice.get_batch(range(30))[0]], again.code_ids[stored[:, :2] % 3])

    # the same through the CLI
    assert main(["store", "prune", str(tmp_path / "full"), str(tmp_path / "cli"), "--synonyms", "2"]) == 0
    assert "codebook 40 -> 5 codes" in capsys.readouterr().out
    cli = TokenStore.open(tmp_path / "cli")
    np.testing.assert_array_equal(cli.get_batch(range(30))[0], stored)
    assert cli.synonyms.shape == (5, 2)


def test_codes_from_maps_codes_the_train_split_lacks_to_the_nearest_kept_code(tmp_path, full_codebook, capsys):
    rng = np.random.default_rng(2)
    kept = np.array([1, 4, 6, 15, 20, 33])
    train = write_tokens(tmp_path / "train", rng.integers(0, 6, (8, 4, 4)), full_codebook[kept], code_ids=kept)
    val_ids = rng.choice([1, 4, 7, 20, 21, 33], size=(25, 4, 4))  # 7 and 21 never occur in train
    write_tokens(tmp_path / "val-full", val_ids, full_codebook, code_ids=np.arange(FULL))
    result = prune_store(tmp_path / "val-full", tmp_path / "val", codes_from=tmp_path / "train")
    val = TokenStore.open(tmp_path / "val")
    expected = nearest_kept(full_codebook, kept)[val_ids]
    np.testing.assert_array_equal(val.get_batch(range(25))[0], expected)
    assert expected[val_ids == 7].size and (kept[expected[val_ids == 7]] != 7).all()
    np.testing.assert_array_equal(val.code_ids, kept)
    np.testing.assert_array_equal(val.codebook, train.codebook)
    assert result.mapped_codes == 2 and result.mapped_tokens == int(np.isin(val_ids, [7, 21]).sum())
    assert result.tokens == val_ids.size and val.config["prune"]["mapped_tokens"] == result.mapped_tokens

    assert (
        main(["store", "prune", str(tmp_path / "val-full"), str(tmp_path / "v2"), "--codes-from", str(train.files.url)])
        == 0
    )
    out = capsys.readouterr().out
    assert f"({result.mapped_tokens:,} of {val_ids.size:,} tokens" in out
    np.testing.assert_array_equal(TokenStore.open(tmp_path / "v2").get_batch(range(25))[0], expected)

    other = full_codebook.copy()
    other[4] = -other[4]
    write_tokens(tmp_path / "alien", val_ids, other, code_ids=np.arange(FULL))
    with pytest.raises(StoreError, match="different tokenizers"):
        prune_store(tmp_path / "alien", tmp_path / "x", codes_from=tmp_path / "train")
    write_tokens(tmp_path / "nocodes", val_ids, full_codebook)
    with pytest.raises(StoreError, match="no code_ids"):
        prune_store(tmp_path / "val-full", tmp_path / "y", codes_from=tmp_path / "nocodes")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_synonyms_of_the_fixture_codebook_equal_seits_synonyms_json(tmp_path, capsys):
    import_seit(
        tmp_path / "s",
        tokens=TOKENS / "tiny-val-token.data.bin.gz",
        labels=TOKENS / "tiny-val-label.txt",
        codebook=TOKENS / "codebook.ckpt",
    )
    assert TokenStore.open(tmp_path / "s").synonyms is None
    out = tmp_path / "synonyms.json"
    assert main(["synonyms", str(tmp_path / "s"), "--k", "10", "--json", str(out)]) == 0
    assert "synonyms [391, 10] stored" in capsys.readouterr().out
    assert out.read_bytes() == (TOKENS / "synonyms.json").read_bytes()
    np.testing.assert_array_equal(TokenStore.open(tmp_path / "s").synonyms, read_synonyms(out, 391))
    assert json.loads(out.read_text())["0"][0] == 0
    assert main(["synonyms", str(tmp_path / "s"), "--k", "10", "--json"]) == 0  # --json alone: on stdout
    assert json.loads(capsys.readouterr().out) == json.loads(out.read_text())
    np.testing.assert_array_equal(add_synonyms(tmp_path / "s", 3), read_synonyms(out, 391)[:, :3])

    with StoreWriter(tmp_path / "nobook", grid_shape=(2,), codebook_size=3) as w:
        w.append(np.array([0, 1]), 0, "a")
    assert main(["synonyms", str(tmp_path / "nobook")]) == 1
    err = capsys.readouterr().err
    assert "nobook: the store has no codebook" in err and "Traceback" not in err
