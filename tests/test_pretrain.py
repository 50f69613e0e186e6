"""seit pretrain (SeiT++'s masked token modeling): exact resume, preemption, the recipe's lr, SeiT++'s command
line, and fine-tuning a token ViT from the pre-trained encoder with seit train."""

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seit.cli import main
from seit.engine.pretrain import Pretrainer, warmup_cosine
from seit.runtime.metrics import read_metrics

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"
MTM = ["--model", "mtm_token_vit_tiny_test", "--crop-size", "6"]  # 8x8 grids -> 6x6 crops -> 3x3 patches
FAST = ["--num-workers", "0", "--no-tensorboard", "--log-every", "1"]
# the whole pre-training augmentation on, two micro-batches per step: 96 samples / 16 = 6 steps an epoch
RECIPE = ["--batch-size", "8", "--accum-iter", "2", "--epochs", "2", "--warmup-epochs", "1", "--ckpt-every", "0"]
AUGMENT = ["--color-adapt-prob", "0.3", "--noise-prob", "0.3", "--synonym-prob", "0.3", "--swap-prob", "0.2"]
# the fine-tuned token ViT: the MTM encoder's width, depth and heads
VIT = ["--model", "deit_tiny_token_4", "--embed-dim", "64", "--depth", "2", "--num-heads", "4", "--crop-size", "6"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory, class_token_store):
    root = tmp_path_factory.mktemp("stores")
    return (class_token_store(root / "train", 96, seed=0), class_token_store(root / "val", 37, seed=1))


def pretrain_args(store, out, *extra):
    return ["pretrain", "--store", str(store), "--output", str(out), *MTM, *FAST, *RECIPE, *AUGMENT, *extra]


def losses(out):
    return [(r["step"], r["loss"]) for r in read_metrics(Path(out) / "metrics.jsonl", "train")]


@pytest.fixture(scope="module")
def pretrained(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("mtm") / "run"
    assert main(pretrain_args(stores[0], out)) == 0
    return out


@pytest.mark.parametrize("stop_at", [4, 6], ids=["mid-epoch", "epoch-end"])
def test_resume_equals_uninterrupted(stores, pretrained, tmp_path, stop_at):
    out = tmp_path / "resumed"
    assert main(pretrain_args(stores[0], out, "--max-steps", str(stop_at))) == 0
    assert torch.load(out / "last.pt", weights_only=True)["global_step"] == stop_at
    assert main(pretrain_args(stores[0], out, "--resume", "auto")) == 0
    assert len(losses(pretrained)) == 12 and losses(out) == losses(pretrained)
    a, b = (torch.load(p / "last.pt", weights_only=True)["model"] for p in (out, pretrained))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_store_without_labels_pretrains_and_resumes_as_the_labelled_one(
    pretrained, tmp_path, class_token_store, capsys
):
    """Labels are never read: the same ids with every label -1 (no class names) give the same losses, resumed;
    `seit train` (supervised) still refuses the store in one line."""
    unlabelled = class_token_store(tmp_path / "unlabelled", 96, seed=0, labelled=False)
    out = tmp_path / "run"
    assert main(pretrain_args(unlabelled, out, "--max-steps", "4")) == 0
    assert main(pretrain_args(unlabelled, out, "--resume", "auto")) == 0
    assert len(losses(out)) == 12 and losses(out) == losses(pretrained)
    capsys.readouterr()
    assert main(["train", "--store", str(unlabelled), "--output", str(tmp_path / "ft"), *VIT, *FAST]) == 1
    assert "no sample has a label (all -1); training needs labelled data" in capsys.readouterr().err


def test_seit_release_tokens_pretrain_without_a_label_file(tmp_path):
    release = ["--train-token-file", str(TOKENS / "tiny-train-token.data.bin.gz")]
    release += ["--codebook-path", str(TOKENS / "codebook.ckpt")]
    common = ["--model", "mtm_token_vit_tiny_test", "--crop-size", "12", "--batch-size", "4", "--max-steps", "2"]
    labelled = ["--train-label-file", str(TOKENS / "tiny-train-label.txt")]
    assert main(["pretrain", *release, *labelled, "--output", str(tmp_path / "a"), *common, *FAST]) == 0
    assert main(["pretrain", *release, "--output", str(tmp_path / "b"), *common, *FAST]) == 0
    assert len(losses(tmp_path / "b")) == 2 and losses(tmp_path / "b") == losses(tmp_path / "a")


def test_lr_is_blr_times_effective_batch_over_256_with_warmup_then_cosine(stores, tmp_path):
    out = tmp_path / "run"
    args = pretrain_args(stores[0], out, "--blr", "0.128", "--max-steps", "3")
    assert main(args) == 0
    lr = 0.128 * 16 / 256  # batch 8 x accum 2 x 1 process
    assert [r["lr"] for r in read_metrics(out / "metrics.jsonl", "train")] == pytest.approx([0, lr / 6, 2 * lr / 6])
    assert warmup_cosine(1.5, 1.0, 0.0, 1.0, 2) == pytest.approx(0.5)  # half-way down the cosine
    assert warmup_cosine(2.0, 1.0, 0.1, 1.0, 2) == pytest.approx(0.1)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert {g["weight_decay"] for g in ckpt["optimizer"]["param_groups"]} == {0.0, 0.05}  # none on norms, biases


def test_sigterm_saves_and_exits_75_with_the_resume_hint(stores, tmp_path, monkeypatch, capsys):
    step = Pretrainer.train_step

    def signalled(self, batches):
        loss = step(self, batches)
        if self.at.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(Pretrainer, "train_step", signalled)
    out = tmp_path / "run"
    assert main(pretrain_args(stores[0], out)) == 75
    err = capsys.readouterr().err
    assert "stopped at step 2" in err and "--resume auto" in err
    assert torch.load(out / "last.pt", weights_only=True)["global_step"] == 2
    assert main(pretrain_args(stores[0], out)) == 1  # a run in use: --resume auto or --restart


def test_finetune_starts_from_the_pretrained_encoder(stores, pretrained, tmp_path):
    import timm

    from seit.models.finetune import MTM_REINITIALISED, finetune_from

    encoder = torch.load(pretrained / "last.pt", weights_only=True)["model"]
    vit = timm.create_model(
        "deit_tiny_token_4", num_classes=4, img_size=6, in_chans=4, embed_dim=64, depth=2, num_heads=4
    )
    stem = vit.patch_embed.proj.weight.clone()
    assert finetune_from(vit, str(pretrained / "last.pt"), []).reinitialised == list(MTM_REINITIALISED)
    state = vit.state_dict()
    for key, value in encoder.items():
        if key.startswith("blocks.") or key in ("cls_token", "pos_embed"):
            assert torch.equal(state[key], value), key
    assert torch.equal(state["fc_norm.weight"], encoder["norm.weight"])
    assert torch.equal(vit.patch_embed.proj.weight, stem)  # the stem reads other inputs: left at its init
    # seit train --finetune ... --layer-decay runs from it
    val = ["--val-store", str(stores[1])]
    args = ["train", "--store", str(stores[0]), *val, "--output", str(tmp_path / "ft"), *VIT, *FAST]
    args += ["--batch-size", "16", "--epochs", "1", "--finetune", str(pretrained / "last.pt"), "--layer-decay", "0.65"]
    assert main(args) == 0
    # a model of another depth does not silently start from scratch
    wrong = ["--depth", "3", "--output", str(tmp_path / "wrong")]
    assert main([*args, *wrong]) == 1


def test_refusals(stores, tmp_path, capsys):
    assert main(pretrain_args(stores[0], tmp_path / "a", "--src")) == 2
    assert "--src (SeiT/DeiT) is not supported" in capsys.readouterr().err
    assert main(pretrain_args(stores[0], tmp_path / "b", "--mask-ratio-mu", "0.2")) == 2
    assert "--mask-ratio-mu 0.2 must lie in" in capsys.readouterr().err
    assert main([*pretrain_args(stores[0], tmp_path / "c"), "--model", "deit_tiny_token_4"]) == 2
    assert "not an MTM model" in capsys.readouterr().err
    assert main(pretrain_args(stores[0], tmp_path / "d", "--batch-size", "64")) == 1  # 96 < 64 x 2
    assert "fewer than one optimizer step's 128" in capsys.readouterr().err


# SeiT++'s README_seit++.md, "Pre-training MTM" (tab indents as spaces); launcher and files: see the test
SEITPP_PRETRAIN = r"""
OMP_NUM_THREADS=1 python -m torch.distributed.launch --nproc_per_node=8 --use_env main_mtm_pretrain.py \
    --model mae_token_vit_base_patch16_dec512d4b_k2s2_vitvqgan_32 \
    --codebook-path ${DATA_DIR}/codebook.ckpt \
    --train-token-file ${DATA_DIR}/imagenet1k-train-token.data.bin.gz \
    --train-label-file ${DATA_DIR}/imagenet1k-train-label.txt \
    --batch_size 128 \
    --accum_iter 4 \
    --blr 1.5e-4 \
    --epochs 400 \
    --output_dir path/to/save \
    --tokenadapt-path tokenadapt.ckpt
"""


def test_seitpp_readme_pretrain_command_runs_under_torchrun(tmp_path):
    """Changed: the launcher (torchrun, 2 CPU processes), the files (SeiT's fixture tokens: 32x32 grids of a
    391 x 32 codebook; a random TokenAdapt pair sized for them), the model (mtm_token_vit_tiny_test for ViT-B),
    batch 128 -> 4; added: --max-steps 2 and SeiT++'s own --input_size 96 (12x12 crops)."""
    from seit.models.tokenadapt import TokenAdapt, TokenAdaptConfig

    pair = TokenAdapt(TokenAdaptConfig(code_dim=32, codebook_size=391, grid=32, crop=12, dim=32, heads=1, mlp_dim=64))
    torch.save(pair.state_dict(), tmp_path / "tokenadapt.ckpt")
    files = {
        "${DATA_DIR}/codebook.ckpt": TOKENS / "codebook.ckpt",
        "${DATA_DIR}/imagenet1k-train-token.data.bin.gz": TOKENS / "tiny-train-token.data.bin.gz",
        "${DATA_DIR}/imagenet1k-train-label.txt": TOKENS / "tiny-train-label.txt",
        "path/to/save": tmp_path / "run",
        "mae_token_vit_base_patch16_dec512d4b_k2s2_vitvqgan_32": "mtm_token_vit_tiny_test",
        "128": "4",
    }
    line = re.sub(r"\\\s*\n\s*", " ", SEITPP_PRETRAIN.strip())
    words = [str(files.get(w, w)) for w in shlex.split(line.split("main_mtm_pretrain.py", 1)[1])]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29561"]
    argv = [*launcher, "-m", "seit", "pretrain", *words, "--max-steps", "2", "--input_size", "96"]
    env = {**os.environ, "SEIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["world_size"] == 2
    cfg = ckpt["config"]
    assert (cfg["optim"]["accum_iter"], cfg["optim"]["blr"], cfg["optim"]["epochs"]) == (4, 1.5e-4, 400)
    assert cfg["model"]["tokenadapt"] == "tokenadapt.ckpt" and ckpt["mtm"]["img_size"] == 12
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    assert [r["step"] for r in rows] == [1, 2]


def test_a_tokenadapt_pair_made_for_other_data_is_refused(stores, tmp_path, capsys):
    from seit.models.tokenadapt import TokenAdapt, TokenAdaptConfig

    other = TokenAdaptConfig(code_dim=4, codebook_size=16, grid=8, crop=4, dim=8, heads=1, mlp_dim=16)  # 4x4 crops
    torch.save(TokenAdapt(other).state_dict(), tmp_path / "ta.ckpt")
    assert main(pretrain_args(stores[0], tmp_path / "run", "--tokenadapt", str(tmp_path / "ta.ckpt"))) == 1
    assert "4x4 crops; this data has 16 codes of 4 dims, 8x8 grids and 6x6 crops" in capsys.readouterr().err


# SeiT++'s README_seit++.md, "finetuning MTM" (tab indents as spaces)
SEITPP_FINETUNE = r"""
    --model deit_base_token_32 \
    --codebook-path ${DATA_DIR}/codebook.ckpt \
    --train-token-file ${DATA_DIR}/imagenet1k-train-token.data.bin.gz \
    --train-label-file ${DATA_DIR}/imagenet1k-train-label.txt \
    --val-token-file ${DATA_DIR}/imagenet1k-val-token.data.bin.gz \
    --val-label-file ${DATA_DIR}/imagenet1k-val-label.txt \
    --token-synonym-dict tokens/codebook-synonyms.json \
    --batch_size 128 \
    --accum_iter 1 \
    --print_freq 400 \
    --epochs 100 \
    --output_dir path/to/save \
    --blr 1.0e-3 --layer_decay 0.65 \
    --dist_eval \
    --finetune path/to/pre-trained model
"""


def test_seitpp_readme_finetune_flags_on_seit_train(capsys):
    """main_mtm_finetune.py's flags mean the same on seit train; its --blr (sqrt scaling) is refused with the
    --lr to give instead. (The README's "path/to/pre-trained model" holds a space: one path here.)"""
    from seit.cli import build_parser
    from seit.config import from_args
    from seit.engine.config import TrainConfig
    from seit.interop import seit_flags

    words = shlex.split(re.sub(r"\\\s*\n\s*", " ", SEITPP_FINETUNE.strip()).replace("pre-trained model", "mtm.pt"))
    assert main(["train", *words]) == 2
    assert "--blr (SeiT/DeiT) is not supported: SeiT++'s fine-tuning lr is blr x sqrt" in capsys.readouterr().err
    i = words.index("--blr")
    args = build_parser().parse_args(["train", *words[:i], "--lr", "4e-3", "--unscale-lr", *words[i + 2 :]])
    seit_flags.apply_reference_flags(args, seit_flags.TRAIN, args.group_parser)
    cfg = from_args(TrainConfig, args)
    assert (cfg.optim.batch_size, cfg.optim.layer_decay, cfg.run.log_every) == (128, 0.65, 400)
    assert (cfg.model.finetune, cfg.run.output, cfg.optim.lr) == ("path/to/mtm.pt", "path/to/save", 4e-3)
