"""Speaker encoders (ECAPA-TDNN, thin ResNet34), training heads and the waveform-to-embedding net."""
from ssrl_lab.models.config import PRESETS, EncoderConfig
from ssrl_lab.models.heads import AAMSoftmax, DINOHead
from ssrl_lab.models.speaker_net import SpeakerNet, build_encoder, count_parameters

__all__ = [
    "EncoderConfig",
    "PRESETS",
    "build_encoder",
    "SpeakerNet",
    "DINOHead",
    "AAMSoftmax",
    "count_parameters",
]
