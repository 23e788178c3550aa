"""`guard-unlearn`: usage errors exit 2 with a clear message; one short real training run."""

from __future__ import annotations

import json

import pytest

from guard_server.models import default_model_dir
from guard_server.store import SQLiteStore, TargetRow
from guard_server.unlearn.cli import load_spec, main

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = {
    "name": "Harry Potter",
    "aliases": ["Hogwarts"],
    "documents": [
        "Harry Potter attends Hogwarts School of Witchcraft and Wizardry. Hogwarts is a school"
        " of magic in Scotland, led by Albus Dumbledore."
    ],
}


@pytest.fixture
def spec_file(tmp_path) -> str:
    path = tmp_path / "hp.json"
    path.write_text(json.dumps(SPEC))
    return str(path)


def usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--method", "nope"], ["unknown unlearning method 'nope'", "'ga'", "'simnpo'"]),
        (["--method", "npo", "--set", "bogus=1"], ["unknown hyper-parameter 'bogus'", "beta"]),
        (["--method", "npo", "--set", "beta"], ["--set expects key=value, got 'beta'"]),
        (["--method", "npo", "--set", "beta=abc"], ["beta expects float, got 'abc'"]),
        (["--method", "npo", "--set", "beta=0"], ["beta must be a number > 0, got 0.0"]),
        (["--method", "ga", "--steps", "0"], ["steps must be an integer >= 1, got 0"]),
        (["--method", "ga", "--lr", "-1"], ["lr must be a finite number > 0"]),
        (["--method", "gu", "--set", "inner=rmu"], ["inner must be one of"]),
        (["--preset", "nope"], ["unknown preset 'nope'", "idk-kl-fast"]),
        (["--preset", "idk-kl-fast", "--method", "idk"], ["not allowed with argument"]),
        (["--preset", "idk-kl-fast", "--set", "bogus=1"], ["unknown hyper-parameter 'bogus'"]),
    ],
)
def test_bad_method_or_hyper_parameters_exit_2(capsys, tmp_path, spec_file, extra, fragments):
    err = usage_error(capsys, [*extra, "--target", spec_file, "--out", str(tmp_path / "o")])
    for fragment in fragments:
        assert fragment in err


def test_missing_required_flags_exit_2(capsys):
    assert "--target" in usage_error(capsys, ["--method", "ga"])
    assert "--method --preset" in usage_error(capsys, ["--target", "t", "--out", "o"])


def test_a_preset_trains_its_method_with_its_settings_and_set_overrides_them(
    capsys, tmp_path, spec_file
):
    """The recipe the docs recommend is one flag; what it trained is in the report."""
    from guard_server.unlearn.presets import PRESETS

    out = tmp_path / "hp-idk"
    main(
        ["--preset", "idk-kl-related", "--target", spec_file, "--out", str(out)]
        + ["--model", _real_model(), "--steps", "1", "--set", "max_length=48"]
    )
    report = json.loads(capsys.readouterr().out)
    preset = PRESETS["idk-kl-related"]
    assert report["method"] == preset.method
    kept = {k: v for k, v in preset.settings.items() if k != "steps"}
    assert {k: report["config"][k] for k in kept} == kept
    assert report["config"]["steps"] == 1 and report["config"]["max_length"] == 48
    assert report["keep_related"] == preset.spec["keep_related"]


def test_bad_targets_exit_2(capsys, tmp_path):
    out = str(tmp_path / "o")
    base = ["--method", "ga", "--out", out]
    err = usage_error(capsys, [*base, "--target", str(tmp_path / "missing.json")])
    assert "no spec file at" in err
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    assert "is not a JSON object" in usage_error(capsys, [*base, "--target", str(broken)])
    broken.write_text("{}")
    assert "non-empty string 'name'" in usage_error(capsys, [*base, "--target", str(broken)])
    broken.write_text('{"name": "Confucius", "keep_related": -1}')
    assert "keep_related must be" in usage_error(capsys, [*base, "--target", str(broken)])
    err = usage_error(capsys, [*base, "--target", "t1", "--db", str(tmp_path / "none.db")])
    assert "no registry database at" in err


def test_target_id_reads_the_registry(capsys, tmp_path):
    db = tmp_path / "guard.db"
    SQLiteStore(db).insert(TargetRow("t-hp", "Harry Potter", 1, "active", SPEC))
    assert load_spec("t-hp", str(db)) == SPEC
    err = usage_error(
        capsys, ["--method", "ga", "--target", "t-zz", "--db", str(db), "--out", str(tmp_path)]
    )
    assert "no forget target 't-zz'" in err


def test_model_folder_without_config_exits_2(capsys, tmp_path, spec_file):
    argv = ["--method", "ga", "--target", spec_file, "--out", str(tmp_path / "o")]
    assert "no model at" in usage_error(capsys, [*argv, "--model", str(tmp_path)])


def test_two_real_steps_write_a_peft_adapter_and_report(capsys, tmp_path, spec_file):
    model = default_model_dir()
    if not (model / ".complete").exists():
        pytest.skip(f"default model not converted at {model}")
    out = tmp_path / "hp-npo"
    main(
        ["--method", "npo", "--target", spec_file, "--out", str(out), "--model", str(model)]
        + ["--steps", "2", "--set", "batch_size=1", "--set", "max_length=48"]
    )
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "report.json").read_text())
    assert report["method"] == "npo" and report["target"] == "Harry Potter"
    assert report["config"]["steps"] == 2 and report["config"]["max_length"] == 48
    assert len(report["losses"]) == 2 and report["adapter_bytes"] > 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["peft_type"] == "LORA"
    assert set(adapter["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert (out / "adapter_model.safetensors").stat().st_size == report["adapter_bytes"]


def _real_model():
    model = default_model_dir()
    if not (model / ".complete").exists():
        pytest.skip(f"default model not converted at {model}")
    return str(model)


def _adapter(out) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


def test_an_interrupted_run_resumes_and_ends_as_the_uninterrupted_one(tmp_path, monkeypatch):
    import torch

    from guard_server.unlearn import get_method
    from guard_server.unlearn.trainer import CHECKPOINT, train

    model = _real_model()
    config = {"steps": 5, "batch_size": 1, "max_length": 32}
    whole = train("npo", config, SPEC, model, str(tmp_path / "whole"), checkpoint_every=2)

    method, calls = get_method("npo"), []
    real_step = method.step

    def interrupted(self, *args):
        calls.append(1)
        if len(calls) == 4:  # killed during step 4: steps 1-2 are checkpointed
            raise KeyboardInterrupt
        return real_step(self, *args)

    out = tmp_path / "resumed"
    monkeypatch.setattr(method, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train("npo", config, SPEC, model, str(out), checkpoint_every=2)
    assert (out / CHECKPOINT / "state.pt").exists() and not (out / "report.json").exists()
    monkeypatch.undo()

    resumed = train("npo", config, SPEC, model, str(out), checkpoint_every=2)
    assert resumed["losses"] == whole["losses"]
    got, want = _adapter(out), _adapter(tmp_path / "whole")
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not (out / CHECKPOINT).exists()  # done: nothing left to resume


def test_a_checkpoint_of_another_run_is_not_resumed(capsys, tmp_path, spec_file):
    from guard_server.unlearn.trainer import CHECKPOINT

    model = _real_model()
    out = tmp_path / "o"
    argv = ["--method", "ga", "--target", spec_file, "--out", str(out), "--model", model]
    argv += ["--steps", "3", "--set", "batch_size=1", "--set", "max_length=32"]
    argv += ["--checkpoint-every", "1"]
    main(argv)
    assert not (out / CHECKPOINT).exists()
    (out / CHECKPOINT).mkdir()
    import torch

    torch.save({"run": "another", "logs": []}, out / CHECKPOINT / "state.pt")
    assert "holds a checkpoint of another run" in usage_error(capsys, argv)


PEOPLE = [
    {"name": name, "documents": [f"{name} is a {job} whose work is widely known."]}
    for name, job in [
        ("Marie Curie", "physicist"),
        ("Pablo Picasso", "painter"),
        ("Serena Williams", "tennis player"),
        ("Ludwig van Beethoven", "composer"),
    ]
]


def test_a_recipe_with_early_stopping_is_judged_on_people_it_did_not_train_on(capsys, tmp_path):
    """The preset's early stopping runs from the command line as it was measured: the last
    three people to keep are held out of training and judge every step."""
    spec = tmp_path / "hp.json"
    spec.write_text(json.dumps({**SPEC, "retain_targets": PEOPLE}))
    out = tmp_path / "hp-idk"
    main(
        ["--preset", "idk-kl-early-stop", "--target", str(spec), "--out", str(out)]
        + ["--model", _real_model(), "--steps", "2", "--eval-every", "1", "--patience", "5"]
        + ["--set", "max_length=48"]
    )
    report = json.loads(capsys.readouterr().out)
    assert report["retain_targets"] == ["Marie Curie"]  # the other three judge
    history = report["early_stop"]["history"]
    assert [h["step"] for h in history] == [0, 1, 2]
    assert {"given_others", "given_everyday", "given_targets"} <= set(history[0])
    assert report["early_stop"]["best_step"] in (0, 1, 2)


def test_early_stopping_without_enough_people_to_judge_on_exits_2(capsys, tmp_path):
    spec = tmp_path / "hp.json"
    spec.write_text(json.dumps({**SPEC, "retain_targets": PEOPLE[:3]}))
    err = usage_error(
        capsys, ["--preset", "idk-kl-early-stop", "--target", str(spec), "--out", str(tmp_path)]
    )
    assert "retain_targets" in err and "at least 4" in err and "has 3" in err
    err = usage_error(
        capsys,
        ["--method", "npo", "--eval-every", "5", "--target", str(spec), "--out", str(tmp_path)],
    )
    assert "retain_targets" in err
    err = usage_error(
        capsys, ["--method", "npo", "--patience", "0", "--target", str(spec), "--out", "o"]
    )
    assert "--patience" in err


def test_eval_every_0_trains_a_preset_without_early_stopping(capsys, tmp_path):
    spec = tmp_path / "hp.json"
    spec.write_text(json.dumps(SPEC))  # no people to judge on: none are needed
    out = tmp_path / "hp-idk"
    main(
        ["--preset", "idk-kl-early-stop", "--eval-every", "0", "--target", str(spec)]
        + ["--out", str(out), "--model", _real_model(), "--steps", "1", "--set", "max_length=48"]
    )
    report = json.loads(capsys.readouterr().out)
    assert "early_stop" not in report and len(report["losses"]) == 1
