"""compile=true (issue 15): an optional, off-by-default switch that torch.compiles the encoders in
place. Compiling on this CPU takes minutes, so the suite tests the wiring (which modules, state
dicts unchanged, every trainer calls it); bench/gpu_check.sh runs the compiled steps on CUDA."""
import pytest
import torch

from ssrl_lab.models import SpeakerNet
from ssrl_lab.models.config import EncoderConfig
from ssrl_lab.train.dino import DINOConfig
from ssrl_lab.train.ssrl import SSRLConfig
from ssrl_lab.train.wrap import compile_encoders


@pytest.fixture
def compiled(monkeypatch):
    """Record nn.Module.compile calls instead of compiling (minutes on this CPU)."""
    seen = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **kw: seen.append(self))
    return seen


def test_off_by_default_in_every_profile():
    for p in ("smoke", "demo", "vox"):
        assert DINOConfig.profile(p).compile is False
        assert SSRLConfig.profile(p, dino_run="x").compile is False


def test_compile_encoders_compiles_each_encoder_once_and_nothing_else(compiled):
    a = SpeakerNet(EncoderConfig.preset("micro"))
    wrapper = torch.nn.Sequential(a)
    keys = list(a.state_dict())
    compile_encoders(DINOConfig.profile("smoke"), a)
    assert compiled == []
    compile_encoders(DINOConfig.profile("smoke", compile=True), wrapper, a)
    assert compiled == [a.encoder]
    assert list(a.state_dict()) == keys


def test_real_compile_in_place_keeps_parameters_and_checkpoint_keys():
    a = SpeakerNet(EncoderConfig.preset("micro"))
    keys = list(a.state_dict())
    compile_encoders(DINOConfig.profile("smoke", compile=True), a)
    assert a.encoder._compiled_call_impl is not None  # compiled lazily at the first call
    assert list(a.state_dict()) == keys and isinstance(a.encoder, torch.nn.Module)


def test_dino_trainer_compiles_student_and_teacher_encoders(smoke_corpus, tmp_path, compiled):
    from ssrl_lab.train import dino

    dino.train(DINOConfig.profile("smoke", corpus=str(smoke_corpus), run_dir=str(tmp_path / "d"), device="cpu",
                                  epochs=1, max_steps_per_epoch=1, eval_every=0, compile=True), progress=False)
    assert len(compiled) == 2 and compiled[0] is not compiled[1]
    assert all(type(m).__name__ in ("ECAPATDNN", "ResNet34") or hasattr(m, "emb_dim") for m in compiled)
