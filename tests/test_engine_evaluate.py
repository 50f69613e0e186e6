"""The figures every comparison quotes (top-1, top-5, loss, per-class, confusion), checked against plain
re-computations on small logits; the evaluation loop's contract (eval mode, autocast, the pipeline's batches),
and the cross-rank sums."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seit.engine import evaluate as evaluate_module
from seit.engine.evaluate import Accumulator, EvalResult, evaluate, save_confusion_png


def _plain(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """The same figures by loops: argmax, the 5 best classes, summed cross-entropy (in float64)."""
    classes = logits.shape[1]
    confusion = np.zeros((classes, classes), dtype=np.int64)
    top5 = 0
    loss = 0.0
    for row, label in zip(logits.double().tolist(), labels.tolist(), strict=True):
        order = sorted(range(classes), key=lambda c: -row[c])
        confusion[label, order[0]] += 1
        top5 += label in order[:5]
        top = max(row)
        loss += math.log(sum(math.exp(v - top) for v in row)) + top - row[label]
    return {"confusion": confusion, "top5": top5, "loss": loss}


@pytest.mark.parametrize("classes", [3, 5, 7, 12])
def test_figures_equal_a_plain_recount(classes):
    gen = torch.Generator().manual_seed(classes)
    acc = Accumulator(classes, torch.device("cpu"))
    logits = torch.randn(40, classes, generator=gen) * 3
    labels = torch.randint(0, classes, (40,), generator=gen)
    for part in (slice(0, 13), slice(13, 14), slice(14, 40)):  # batches of any size add up
        acc.add(logits[part], labels[part])
    result = acc.result([f"c{i}" for i in range(classes)])
    plain = _plain(logits, labels)
    np.testing.assert_array_equal(result.confusion, plain["confusion"])
    assert result.top5_correct == plain["top5"]  # with under 5 classes: every sample
    assert result.loss_sum == pytest.approx(plain["loss"], rel=1e-6)
    assert result.count == 40
    assert result.top1 == pytest.approx(100 * np.trace(plain["confusion"]) / 40)
    assert result.top5 == pytest.approx(100 * plain["top5"] / 40)
    assert result.loss == pytest.approx(plain["loss"] / 40, rel=1e-6)
    assert result.confusion.dtype == np.int64 and result.confusion.shape == (classes, classes)


def test_low_precision_logits_are_scored_in_float32():
    """bf16 logits (autocast) give the figures of the same values in float32: no half-precision loss sums."""
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(64, 10, generator=gen) * 4).bfloat16()
    labels = torch.randint(0, 10, (64,), generator=gen)
    low, full = Accumulator(10, torch.device("cpu")), Accumulator(10, torch.device("cpu"))
    low.add(logits, labels)
    full.add(logits.float(), labels)
    a, b = low.result([]), full.result([])
    np.testing.assert_array_equal(a.confusion, b.confusion)
    assert (a.top5_correct, a.loss_sum) == (b.top5_correct, b.loss_sum)
    assert low.loss.dtype == torch.float64


def test_every_sum_is_added_over_ranks(monkeypatch):
    """Two ranks that saw the same samples: every figure's sum doubles, the rates stay."""
    reduced = []

    def two_ranks(tensor, op="sum"):
        assert op == "sum"
        reduced.append(tensor.dtype)
        tensor.mul_(2)
        return tensor

    monkeypatch.setattr(evaluate_module, "all_reduce", two_ranks)
    acc = Accumulator(4, torch.device("cpu"))
    logits = torch.tensor([[3.0, 1, 0, 0], [0, 2, 1, 0], [0, 0, 0, 5]])
    acc.add(logits, torch.tensor([0, 2, 3]))
    result = acc.result(["a", "b", "c", "d"])
    assert sorted(map(str, reduced)) == ["torch.float64", "torch.int64", "torch.int64"]
    assert result.count == 6 and result.top5_correct == 6
    assert result.top1 == pytest.approx(100 * 4 / 6)
    single = F.cross_entropy(logits, torch.tensor([0, 2, 3]), reduction="sum").item()
    assert result.loss_sum == pytest.approx(2 * single) and result.loss == pytest.approx(single / 3)


def test_an_empty_evaluation_reports_zeros_and_untested_classes_nan():
    empty = EvalResult(np.zeros((3, 3), dtype=np.int64), 0, 0.0)
    assert (empty.count, empty.top1, empty.top5, empty.loss) == (0, 0.0, 0.0, 0.0)
    result = EvalResult(np.array([[2, 1, 0], [0, 0, 0], [1, 0, 3]]), 6, 4.2, ["cat", "dog", "owl"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a class without samples is NaN by choice, not by a 0/0 warning
        per_class = result.per_class()
    assert list(per_class) == ["cat", "dog", "owl"]
    assert per_class["cat"] == pytest.approx(200 / 3) and math.isnan(per_class["dog"]) and per_class["owl"] == 75
    unnamed = EvalResult(result.confusion, 6, 4.2)
    assert list(unnamed.per_class()) == ["0", "1", "2"]
    assert result.summary() == {"top1": pytest.approx(500 / 7), "top5": pytest.approx(600 / 7), "loss": 0.6, "count": 7}
    as_json = result.to_json()
    assert as_json["confusion"] == [[2, 1, 0], [0, 0, 0], [1, 0, 3]] and as_json["class_names"] == ["cat", "dog", "owl"]
    assert as_json["per_class_top1"]["owl"] == 75 and as_json["count"] == 7 and as_json["top1"] == result.top1


class _Pipe:
    """What ``evaluate`` needs of a pipeline: its val batches, how one becomes model input, the classes."""

    num_classes = 3

    def __init__(self, batches):
        self.batches = batches
        self.class_names = ["a", "b", "c"]
        self.prepared = 0

    def eval_loader(self):
        return iter(self.batches)

    def eval_batch(self, inputs):
        self.prepared += 1
        return inputs * 2  # the pipeline's own preparation, which the model must see


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_scores_the_prepared_batches_in_eval_mode_and_restores_the_mode(training):
    seen_modes = []

    class Model(torch.nn.Module):
        def forward(self, x):
            seen_modes.append(self.training)
            return x

    model = Model().train(training)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(n, 3, generator=gen), torch.randint(0, 3, (n,), generator=gen)) for n in (4, 1, 6)]
    pipe = _Pipe(batches)

    class Autocast:  # reusable, like torch.autocast: entered around every forward pass
        entered = 0

        def __enter__(self):
            Autocast.entered += 1

        def __exit__(self, *_):
            return False

    result = evaluate(model, pipe, torch.device("cpu"), autocast=Autocast())
    assert seen_modes == [False] * 3 and model.training is training and pipe.prepared == 3
    assert Autocast.entered == 3
    want = Accumulator(3, torch.device("cpu"))
    for x, y in batches:
        want.add(x * 2, y)
    np.testing.assert_array_equal(result.confusion, want.result([]).confusion)
    assert result.loss_sum == pytest.approx(float(want.loss)) and result.class_names == ["a", "b", "c"]
    assert result.count == 11


def test_evaluate_runs_without_a_gradient():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.eye(3))

        def forward(self, x):
            assert not torch.is_grad_enabled()
            return x @ self.w

    evaluate(Model(), _Pipe([(torch.randn(2, 3), torch.tensor([0, 1]))]), torch.device("cpu"))


@pytest.mark.parametrize("classes", [3, 30, 60])
def test_the_confusion_picture_is_a_png(tmp_path, classes):
    confusion = np.random.default_rng(0).integers(0, 5, (classes, classes))
    path = tmp_path / "confusion.png"
    save_confusion_png(EvalResult(confusion, 0, 0.0, [f"class {i}" for i in range(classes)]), path, "")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
