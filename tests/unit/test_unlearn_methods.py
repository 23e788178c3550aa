"""Unlearning methods on a tiny random Llama with a LoRA adapter; the registry; the data."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from classifiers.probes import TEMPLATES
from guard_server.models import default_model_dir
from guard_server.unlearn import (
    Batch,
    Tokens,
    UnlearnConfig,
    UnlearningMethod,
    get_method,
    make_config,
    method_names,
    register_method,
)
from guard_server.unlearn.data import (
    QUESTIONS,
    Pair,
    UnlearnData,
    cloze_prompts,
    encode,
    forget_pairs,
    related_names,
    retain_pairs,
)
from guard_server.unlearn.gu import flat_grad
from guard_server.unlearn.losses import IGNORE, nll
from guard_server.unlearn.trainer import lora_model
from tests.tiny import tiny_llama_config
from tests.unit.conftest import single_thread

VOCAB, PROMPT, LENGTH = 96, 6, 16
REQUIRED = {"ga", "gd", "npo", "simnpo", "rmu", "flat", "gu", "idk", "shred", "ssd"}
pytestmark = pytest.mark.usefixtures("one_thread")


def make_tokens(seed: int, answer: list[int] | None = None) -> Tokens:
    """Four rows of random prompts and answers; the last row is right-padded by three."""
    ids = torch.randint(3, VOCAB, (4, LENGTH), generator=torch.Generator().manual_seed(seed))
    if answer is not None:
        ids[:, PROMPT : PROMPT + len(answer)] = torch.tensor(answer)
    labels = ids.clone()
    labels[:, :PROMPT] = IGNORE
    mask = torch.ones_like(ids)
    ids[-1, -3:], labels[-1, -3:], mask[-1, -3:] = 0, IGNORE, 0
    return Tokens(ids, mask, labels)


@pytest.fixture
def batch() -> Batch:
    forget = make_tokens(1)
    good = Tokens(forget.input_ids.clone(), forget.attention_mask, forget.labels.clone())
    good.input_ids[:, PROMPT:] = 7  # the same "I don't know" answer to every question
    good.labels[:, PROMPT:] = torch.where(forget.attention_mask[:, PROMPT:] > 0, 7, IGNORE)
    return Batch(forget, make_tokens(2), good)


@pytest.fixture(scope="session")
def memorised() -> tuple[LlamaConfig, dict[str, torch.Tensor]]:
    """A tiny Llama's weights after it has learnt the forget and retain answers: forgetting
    is only measurable on a model that knows something (SimNPO saturates otherwise).

    On one thread, as the tests that use it (it is set up before their `one_thread`)."""
    with single_thread():
        torch.manual_seed(0)
        config = tiny_llama_config(VOCAB)
        model = LlamaForCausalLM(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(40):
            optimizer.zero_grad()
            (nll(model, make_tokens(1)) + nll(model, make_tokens(2))).backward()
            optimizer.step()
        return config, model.state_dict()


@pytest.fixture
def model(memorised) -> torch.nn.Module:
    config, state = memorised
    base = LlamaForCausalLM(config)
    base.load_state_dict(state)
    torch.manual_seed(0)
    return lora_model(base, make_config(UnlearnConfig, {"lora_rank": 4, "lora_alpha": 8}))


def method(name: str, **overrides) -> UnlearningMethod:
    return get_method(name).from_overrides({"lr": 1e-2, **overrides})


def train(model, algo: UnlearningMethod, batch: Batch, steps: int = 5) -> list[dict]:
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=algo.config.lr
    )
    return [algo.step(model, batch, optimizer) for _ in range(steps)]


@torch.no_grad()
def nll_of(model, tokens: Tokens) -> float:
    return float(nll(model, tokens))


FORGETTING = [
    ("ga", {}),
    ("gd", {}),
    ("npo", {}),
    ("npo", {"retain_weight": 0.0}),
    ("simnpo", {}),
    ("simnpo", {"gamma": 1.0}),
    ("flat", {}),
    ("idk", {}),
    ("idk", {"retain_loss": "kl"}),
    ("gd", {"retain_loss": "kl"}),
    ("gu", {}),
    ("gu", {"inner": "npo"}),
    ("shred", {}),
    ("shred", {"nucleus": 0.0}),
]


@pytest.mark.parametrize("name, overrides", FORGETTING + [("rmu", {})])
def test_loss_is_finite_with_logs(model, batch, name, overrides):
    loss, logs = method(name, **overrides).loss(model, batch)
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    assert logs and all(math.isfinite(v) for v in logs.values())


@pytest.mark.parametrize("name, overrides", FORGETTING)
def test_forget_nll_rises_after_five_steps(model, batch, name, overrides):
    before = nll_of(model, batch.forget)
    logs = train(model, method(name, **overrides), batch)
    assert all(math.isfinite(step["loss"]) for step in logs)
    assert nll_of(model, batch.forget) > before + 0.5


def test_kl_retain_is_zero_for_an_untouched_adapter_and_holds_the_retain_rows(model, batch):
    from guard_server.unlearn.losses import reference_kl

    assert float(reference_kl(model, batch.retain).detach()) == pytest.approx(0.0, abs=1e-6)
    kl_only = train(model, method("gd", retain_loss="kl"), batch)
    assert kl_only[0]["retain_kl"] == pytest.approx(0.0, abs=1e-6)
    assert "retain_nll" not in kl_only[0]
    drift = float(reference_kl(model, batch.retain).detach())
    assert drift > 0  # the forget term moved the retain rows too, and KL measures it


def test_kl_retain_keeps_the_retain_rows_closer_than_none(model, batch):
    from guard_server.unlearn.losses import reference_kl

    start = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, method("idk", retain_weight=0.0), batch, steps=8)
    alone = float(reference_kl(model, batch.retain).detach())
    model.load_state_dict(start)
    train(model, method("idk", retain_loss="kl", retain_weight=4.0), batch, steps=8)
    assert float(reference_kl(model, batch.retain).detach()) < 0.5 * alone


def full_logprobs(model, tokens: Tokens) -> torch.Tensor:
    """Label log-probabilities the plain way: the output layer at every position."""
    logits = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
    labels = tokens.labels[:, 1:]
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    picked = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return torch.where(labels != IGNORE, picked, 0.0)


@pytest.mark.parametrize("peft", [True, False])
def test_label_logprobs_and_their_gradients_are_the_full_forward_ones(model, batch, peft):
    from guard_server.unlearn.losses import token_logprobs

    train(model, method("gd"), batch, steps=2)  # LoRA B away from zero: the adapter counts
    net = model if peft else model.get_base_model()
    params = [p for p in net.parameters() if p.requires_grad]
    expected = full_logprobs(net, batch.retain)
    want = torch.autograd.grad(expected.sum(), params)
    got, mask = token_logprobs(net, batch.retain)
    assert torch.equal(mask, batch.retain.labels[:, 1:] != IGNORE)
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * scale)
    for g, w in zip(torch.autograd.grad(got.sum(), params), want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max()))
    if peft:  # the frozen reference: the same numbers with the adapter switched off
        from guard_server.unlearn.losses import reference_logprob

        with torch.no_grad(), model.disable_adapter():
            base = full_logprobs(model, batch.retain)
        assert not torch.allclose(base, expected)  # the adapter changed something
        logp, _ = reference_logprob(model, batch.retain)
        torch.testing.assert_close(logp, base.sum(-1), rtol=0, atol=1e-5 * float(base.abs().sum()))


@pytest.mark.parametrize(
    "name, overrides",
    [("gd", {}), ("npo", {}), ("simnpo", {}), ("idk", {"retain_loss": "kl", "retain_weight": 4.0})],
)
def test_a_step_follows_the_gradient_of_its_whole_loss(model, batch, name, overrides):
    algo = method(name, **overrides)
    train(model, algo, batch, steps=2)  # the terms away from their starting values
    params = [p for p in model.parameters() if p.requires_grad]
    loss, _ = algo.loss(model, batch)
    want = torch.autograd.grad(loss, params)
    logs = algo.step(model, batch, torch.optim.SGD(params, lr=0.0))
    assert logs["loss"] == pytest.approx(float(loss), rel=1e-5, abs=1e-6 * float(loss.abs()) + 1e-6)
    for p, w in zip(params, want, strict=True):
        torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-6 * float(w.abs().max()))


def test_an_unknown_retain_loss_is_refused_by_name():
    with pytest.raises(ValueError, match="retain_loss must be nll or kl, got 'mse'"):
        method("idk", retain_loss="mse")


@pytest.mark.parametrize("name", ["gd", "gu"])
def test_retain_nll_moves_far_less_than_forget(model, batch, name):
    forget, retain = nll_of(model, batch.forget), nll_of(model, batch.retain)
    train(model, method(name), batch)
    forget_shift = nll_of(model, batch.forget) - forget
    assert abs(nll_of(model, batch.retain) - retain) < 0.1 * forget_shift


def test_rmu_pulls_forget_activations_toward_the_control_vector(model, batch):
    rmu = method("rmu")
    with torch.no_grad():
        before = rmu.loss(model, batch)[1]["forget_mse"]
    train(model, rmu, batch)
    with torch.no_grad():
        after = rmu.loss(model, batch)[1]
    assert after["forget_mse"] < before
    assert math.isfinite(after["retain_mse"])


def test_rmu_layer_past_the_model_names_the_field(model, batch):
    with pytest.raises(ValueError, match="layer must be < num_hidden_layers"):
        method("rmu", layer=5).loss(model, batch)


def test_npo_starts_at_its_closed_form(model, batch):
    # A fresh LoRA adapter is zero, so the model equals its reference: loss = (2/beta) log 2.
    loss, _ = method("npo", beta=0.5, retain_weight=0.0).loss(model, batch)
    assert float(loss.detach()) == pytest.approx(4 * math.log(2), rel=1e-5)


def test_simnpo_matches_its_formula(model, batch):
    beta, gamma = 2.0, 0.5
    loss, _ = method("simnpo", beta=beta, gamma=gamma, retain_weight=0.0).loss(model, batch)
    with torch.no_grad():
        logits = model(input_ids=batch.forget.input_ids).logits[:, :-1].log_softmax(-1)
        labels = batch.forget.labels[:, 1:]
        mask = labels != IGNORE
        logp = logits.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask
        mean_logp = logp.sum(-1) / mask.sum(-1)
    expected = -(2 / beta) * torch.nn.functional.logsigmoid(-beta * mean_logp - gamma).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4)


def test_shred_starts_at_the_kl_of_its_targets_and_reads_no_retain_rows(model, batch):
    from guard_server.unlearn.shred import forget_positions

    # Over the whole vocabulary, a fresh adapter (model = base) is at KL 0 on the anchors and
    # at KL(p without the answer's token || p) = -log(1 - p(answer)) on the forget positions.
    algo = method("shred", top_k=VOCAB, nucleus=0.0, forget_share=0.5)
    loss, logs = algo.loss(model, batch)
    with torch.no_grad():
        logp = full_logprobs(model, batch.forget)
    mask = batch.forget.labels[:, 1:] != IGNORE
    chosen = forget_positions(logp[mask], mask.nonzero()[:, 0], 0.5)
    expected = torch.where(chosen, -torch.log1p(-logp[mask].exp()), 0.0).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4)
    assert logs["anchor_kl"] == pytest.approx(0.0, abs=1e-5)
    other = Batch(batch.forget, make_tokens(9), batch.good)
    assert float(algo.loss(model, other)[0].detach()) == pytest.approx(float(loss.detach()))


def test_shred_forgets_the_surprising_tokens_and_keeps_the_rest(model, batch):
    from guard_server.unlearn.shred import forget_positions

    mask = batch.forget.labels[:, 1:] != IGNORE
    with torch.no_grad():
        before = full_logprobs(model, batch.forget)[mask]
    chosen = forget_positions(before, mask.nonzero()[:, 0], 0.5)
    train(model, method("shred"), batch, steps=8)
    with torch.no_grad():
        after = full_logprobs(model, batch.forget)[mask]
    forgot = float((before - after)[chosen].mean())
    assert forgot > 1.0  # nats: the demoted tokens lost most of their probability
    assert float((before - after)[~chosen].abs().mean()) < 0.25 * forgot


def test_idk_teaches_the_good_answer_keeps_retain_and_needs_it(model, batch):
    good, retain = nll_of(model, batch.good), nll_of(model, batch.retain)
    idk = method("idk")
    logs = train(model, idk, batch)
    assert logs[-1]["idk_nll"] < logs[0]["idk_nll"]
    good_drop = good - nll_of(model, batch.good)
    assert good_drop > 0.5
    assert abs(nll_of(model, batch.retain) - retain) < 0.1 * good_drop
    with pytest.raises(ValueError, match="idk needs batch.good"):
        idk.loss(model, Batch(batch.forget, batch.retain))


def test_flat_raises_the_good_answer_and_needs_it(model, batch):
    flat = method("flat")
    logs = train(model, flat, batch)
    assert logs[-1]["good_prob"] > logs[0]["good_prob"]
    assert logs[-1]["bad_prob"] < logs[0]["bad_prob"]
    with pytest.raises(ValueError, match="flat needs batch.good"):
        flat.loss(model, Batch(batch.forget, batch.retain))


def test_gu_applied_forget_gradient_never_conflicts_with_retain(model, batch):
    gu = method("gu", retain_weight=1.0)
    params = [p for p in model.parameters() if p.requires_grad]
    projected = []
    for _ in range(3):
        g_retain = flat_grad(nll(model, batch.retain), params)
        logs = train(model, gu, batch, steps=1)[0]
        g_forget = torch.cat([p.grad.flatten() for p in params]) - g_retain
        # A float32 dot product errs in proportion to the product of the two norms.
        assert torch.dot(g_forget, g_retain) >= -1e-5 * g_forget.norm() * g_retain.norm()
        projected.append(logs["projected"])
    assert set(projected) <= {0.0, 1.0}
    assert 1.0 in projected, "no step conflicted with retain: the projection went untested"


def test_every_required_method_is_registered():
    assert set(method_names()) >= REQUIRED
    for name in REQUIRED:
        assert get_method(name).name == name


@pytest.mark.parametrize(
    "name, fragment", [("GA2", "lower-case"), ("", "lower-case"), ("ga", "already registered")]
)
def test_register_rejects_bad_and_duplicate_names(name, fragment):
    with pytest.raises(ValueError, match=fragment):
        register_method(name, UnlearnConfig)(type("X", (get_method("ga"),), {}))


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown unlearning method 'nope'.*'npo'"):
        get_method("nope")


@pytest.mark.parametrize(
    "name, overrides, fragment",
    [
        ("ga", {"lr": -1.0}, "lr must be a finite number > 0, got -1.0"),
        ("ga", {"lr": float("nan")}, "lr must be"),
        ("ga", {"steps": 0}, "steps must be an integer >= 1, got 0"),
        ("ga", {"batch_size": -2}, "batch_size must be"),
        ("ga", {"seed": -1}, "seed must be"),
        ("idk", {"retain_batch_size": 0}, "retain_batch_size must be None or an integer >= 1"),
        (
            "idk",
            {"general_retain": 5},
            "general_retain must be an integer from 0 to the retain rows a step draws (4), got 5",
        ),
        ("gd", {"retain_weight": -0.5}, "retain_weight must be"),
        ("npo", {"beta": 0.0}, "beta must be a number > 0, got 0.0"),
        ("simnpo", {"beta": -1.0}, "beta must be"),
        ("simnpo", {"gamma": float("inf")}, "gamma must be"),
        ("rmu", {"layer": -1}, "layer must be"),
        ("shred", {"forget_share": 0.0}, "forget_share must be a number in (0, 1], got 0.0"),
        ("shred", {"top_k": 1}, "top_k must be an integer >= 2"),
        ("shred", {"nucleus": 1.0}, "nucleus must be a number in [0, 1)"),
        ("rmu", {"alpha": -1.0}, "alpha must be"),
        ("flat", {"good_answer": "  "}, "good_answer must be non-empty"),
        ("idk", {"good_answer": ""}, "good_answer must be non-empty"),
        ("idk", {"retain_weight": -1.0}, "retain_weight must be"),
        ("gu", {"inner": "rmu"}, "inner must be one of"),
        ("gu", {"inner": "gu"}, "inner must be one of"),
        ("ga", {"steps": "abc"}, "steps expects int, got 'abc'"),
        ("ga", {"steps": 1.5}, "steps expects int"),
        ("ga", {"beta": 1.0}, "unknown hyper-parameter 'beta' for method 'ga'; valid: lr, steps"),
    ],
)
def test_bad_config_values_name_the_field(name, overrides, fragment):
    cls = get_method(name)
    with pytest.raises(ValueError) as info:
        make_config(cls.config_cls, overrides, name)
    assert fragment in str(info.value)


def test_config_strings_convert_to_field_types():
    config = make_config(get_method("rmu").config_cls, {"lr": "1e-3", "steps": "3", "layer": "1"})
    assert (config.lr, config.steps, config.layer) == (1e-3, 3, 1)
    assert make_config(get_method("rmu").config_cls, {"layer": "none"}).layer is None
    assert make_config(get_method("gu").config_cls, {"inner": "npo"}).inner == "npo"
    assert make_config(get_method("npo").config_cls, {"beta": 1}).beta == 1.0


HP = {
    "name": "Harry Potter",
    "aliases": ["Hogwarts"],
    "examples": ["Which house was Harry sorted into?"],
    "documents": [
        "Harry Potter attends Hogwarts School of Witchcraft and Wizardry. Hogwarts is a school"
        " of magic in Scotland, led by Albus Dumbledore."
    ],
}


def test_forget_pairs_cover_probes_examples_and_documents():
    pairs = forget_pairs(HP)
    prompted = [p for p in pairs if p.prompt is not None]
    blanks = cloze_prompts(["Harry Potter", "Hogwarts"], HP["documents"])
    assert len(prompted) == 2 * len(TEMPLATES) + 2 * len(QUESTIONS) + len(blanks) + 1
    assert prompted[-1].prompt == HP["examples"][0]
    assert {"When was Harry Potter born?", "When was Hogwarts born?"} <= {
        p.prompt for p in prompted
    }
    assert {p.answer for p in prompted} == {
        "Harry Potter attends Hogwarts School of Witchcraft and Wizardry.",
        "Hogwarts is a school of magic in Scotland, led by Albus Dumbledore.",
    }
    assert pairs[-1] == Pair(None, HP["documents"][0])
    assert forget_pairs({"name": "Zorblax"})[0].answer == "Zorblax."
    with pytest.raises(ValueError, match="non-empty string 'name'"):
        forget_pairs({"documents": ["x"]})


def test_cloze_prompts_blank_a_word_of_sentences_that_mention_the_target():
    documents = [
        "Stephen King was born in Portland, Maine in 1947. Looking back, critics praised "
        "his books. King wrote Carrie in a trailer. Stephen King, Stephen King and Stephen King."
    ]
    assert cloze_prompts(["Stephen King"], documents) == [
        "Fill in the blank: Stephen King was born in Portland, Maine in ___.",
        "Fill in the blank: King wrote Carrie in a ___.",
    ]  # "Looking" holds "king" but is another word: that sentence is not about him
    assert cloze_prompts(["Stephen King"], documents, limit=1) == [
        "Fill in the blank: Stephen King was born in Portland, Maine in ___."
    ]
    assert cloze_prompts(["Zorblax"], documents) == []


def test_held_out_questions_are_not_what_the_methods_train_on():
    from guard_server.unlearn.monitor import HELD_OUT_QUESTIONS

    trained = {t.replace("{x}", "{name}") for t in (*TEMPLATES, *QUESTIONS)}
    assert not trained & set(HELD_OUT_QUESTIONS)


def test_retain_set_is_general_knowledge():
    pairs = retain_pairs()
    assert len(pairs) >= 40
    text = " ".join(f"{p.prompt} {p.answer}" for p in pairs).lower()
    for banned in ("harry", "potter", "hogwarts", "einstein", "gates", "eiffel"):
        assert banned not in text


def test_a_spec_adds_what_must_be_kept_to_the_retain_set():
    kept = ["Bruce Springsteen is an American singer-songwriter from New Jersey."]
    pairs = retain_pairs({"name": "Stephen King", "retain_documents": kept})
    assert pairs[: len(retain_pairs())] == retain_pairs()  # the shipped set, then the spec's
    assert pairs[-1] == Pair(None, kept[0])
    for bad in ("one text", [1, 2]):
        with pytest.raises(ValueError, match="retain_documents"):
            retain_pairs({"name": "x", "retain_documents": bad})


def test_retain_targets_keep_questions_about_other_people_answered():
    bruce = {"name": "Bruce Springsteen", "documents": ["Bruce Springsteen is a singer from NJ."]}
    pairs = retain_pairs({"name": "Stephen King", "retain_targets": [bruce]})
    asked = [p for p in pairs[len(retain_pairs()) :] if p.prompt is not None]
    assert asked and all("Bruce Springsteen" in p.prompt for p in asked)
    assert {p.answer for p in asked} == {"Bruce Springsteen is a singer from NJ."}
    assert Pair(None, bruce["documents"][0]) in pairs
    for bad in ({"name": "x"}, ["Bruce Springsteen"]):
        with pytest.raises(ValueError, match="retain_targets"):
            retain_pairs({"name": "x", "retain_targets": bad})
    with pytest.raises(ValueError, match="non-empty string 'name'"):
        retain_pairs({"name": "x", "retain_targets": [{"documents": ["y"]}]})


def test_keep_related_keeps_what_the_documents_about_the_target_name():
    documents = [
        "Confucius taught in the state of Lu. His teaching, Confucianism, spread across China.",
        "Born in Qufu in March, Confucius wrote little; scholars of Confucianism kept his words.",
        "In March the Analects, compiled in China's east, record Confucius and Mencius.",
        "A Song dynasty scholar in China wrote about Mencius, not about Confucius.",
    ]
    spec = {"name": "Confucius", "documents": documents, "keep_related": 2}
    # Named inside a sentence in two documents or more ("China's" is China, "Confucius and
    # Mencius" two names); never the target, a month, a sentence's first word, or a name
    # seen once.
    assert related_names(["Confucius"], documents, 5) == ["China", "Confucianism", "Mencius"]
    kept = retain_pairs(spec)[len(retain_pairs()) :]
    assert {p.answer for p in kept} == {"China.", "Confucianism."}
    assert "What is the most famous work of Confucianism?" in {p.prompt for p in kept}
    assert not any("Confucius" in p.prompt for p in kept)
    # Only texts that mention a name lend it their names; each is kept once.
    laozi = ["Laozi wrote in Chu about Taoism.", "Laozi, founder of Taoism, left Zhou."]
    assert related_names(["Confucius", "Laozi"], [*documents, *laozi], 1) == ["China", "Taoism"]
    assert retain_pairs({**spec, "keep_related": 0}) == retain_pairs()
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="keep_related"):
            retain_pairs({**spec, "keep_related": bad})


@pytest.fixture(scope="session")
def tokenizer():
    path = default_model_dir()
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"default model not converted at {path}")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def test_labels_cover_only_the_chat_answer(tokenizer):
    ((ids, labels),) = encode(tokenizer, Pair("Who is Ada?", "A mathematician."), 128)
    answer = [t for t in labels if t != IGNORE]
    assert tokenizer.decode(answer) == "A mathematician.<|im_end|>\n"
    assert ids[-len(answer) :] == answer and "<|im_start|>user" in tokenizer.decode(ids)


def test_long_rows_are_cut_to_max_length(tokenizer):
    ((ids, labels),) = encode(tokenizer, Pair("Who is Ada?", "word " * 100), 48)
    assert len(ids) == 48 and labels.count(IGNORE) == 24
    chunks = encode(tokenizer, Pair(None, "word " * 100), 48)
    assert len(chunks) == 3 and all(i == lab for i, lab in chunks)


def test_batches_align_good_rows_with_forget_questions(tokenizer):
    data = UnlearnData.build(HP, tokenizer, 64, good_answer="I don't know.", seed=0)
    batch = data.batch(3)
    assert batch.forget.input_ids.shape[0] == batch.good.input_ids.shape[0] == 3
    for row in range(3):
        good = batch.good.labels[row][batch.good.labels[row] != IGNORE].tolist()
        assert tokenizer.decode(good) == "I don't know.<|im_end|>\n"
        asked = int(
            (batch.forget.labels[row] == IGNORE)
            .logical_and(batch.forget.attention_mask[row] > 0)
            .sum()
        )
        if asked:  # a question row: the good row asks the same question
            assert (
                batch.good.input_ids[row, :asked].tolist()
                == batch.forget.input_ids[row, :asked].tolist()
            )
    assert UnlearnData.build(HP, tokenizer, 64).batch(2).good is None


def test_a_step_draws_its_general_retain_rows_from_the_shipped_general_set(tokenizer):
    spec = {**HP, "retain_documents": [f"Other text number {i}." for i in range(300)]}
    data = UnlearnData.build(spec, tokenizer, 64, seed=0)
    rows = [tuple(ids) for p in retain_pairs() for ids, _ in encode(tokenizer, p, 64)]
    general = set(rows)
    assert any("Write a haiku" in (p.prompt or "") for p in retain_pairs())  # instructions too

    def drawn(batch) -> list[tuple[int, ...]]:
        ids, mask = batch.retain.input_ids, batch.retain.attention_mask
        return [tuple(row[m > 0].tolist()) for row, m in zip(ids, mask, strict=True)]

    steps = [drawn(data.batch(2, retain_size=4, general=2)) for _ in range(10)]
    assert all(sum(row in general for row in step) >= 2 for step in steps)
    # One pass over the general set: every shipped question and instruction, once each.
    fresh = UnlearnData.build(spec, tokenizer, 64, seed=0)
    whole = drawn(fresh.batch(2, retain_size=len(rows), general=len(rows)))
    assert sorted(whole) == sorted(rows)
    # Without the option the general rows are drawn no more often than any other row.
    uniform = [drawn(data.batch(2, retain_size=4)) for _ in range(10)]
    assert sum(row in general for step in uniform for row in step) < 20


def test_a_training_step_draws_the_rows_its_config_names(tokenizer):
    spec = {**HP, "retain_documents": [f"Other text number {i}." for i in range(300)]}
    general = {tuple(ids) for p in retain_pairs() for ids, _ in encode(tokenizer, p, 64)}
    config = make_config(UnlearnConfig, {"batch_size": 2, "retain_batch_size": 5})
    plain = UnlearnData.build(spec, tokenizer, 64, seed=0).step_batch(config)
    assert (plain.forget.input_ids.shape[0], plain.retain.input_ids.shape[0]) == (2, 5)
    config = make_config(UnlearnConfig, {**dataclasses.asdict(config), "general_retain": 5})
    batch = UnlearnData.build(spec, tokenizer, 64, seed=0).step_batch(config)
    ids, mask = batch.retain.input_ids, batch.retain.attention_mask
    assert all(tuple(row[m > 0].tolist()) in general for row, m in zip(ids, mask, strict=True))


def test_general_rows_asked_of_data_without_a_general_set_are_refused(tokenizer):
    built = UnlearnData.build(HP, tokenizer, 64, seed=0)
    data = UnlearnData(built.forget, built.retain, None, 0, seed=0)  # general set not marked
    with pytest.raises(ValueError, match="general_retain is 1, but these retain rows hold no"):
        data.batch(2, retain_size=4, general=1)


def test_a_step_can_draw_more_retain_rows_than_forget_rows(tokenizer):
    data = UnlearnData.build(HP, tokenizer, 64, seed=0)
    batch = data.batch(2, retain_size=len(data.retain))
    assert batch.forget.input_ids.shape[0] == 2
    # The whole retain set in one step: each row exactly once.
    drawn = [
        row[mask > 0].tolist()
        for row, mask in zip(batch.retain.input_ids, batch.retain.attention_mask, strict=True)
    ]
    assert sorted(drawn) == sorted(ids for ids, _ in data.retain)
    assert data.batch(2).retain.input_ids.shape[0] == 2  # default: as many as forget rows
