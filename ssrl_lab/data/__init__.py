"""Data layer: utterance tables, audio I/O, corpus readers, trial lists, augmentation.

Re-exports the names other modules and notebooks use most; see docs/ARCHITECTURE.md "Data".
"""
from .audio import SAMPLE_RATE, AudioError, SkipLog, check_audio, fixed_crop, load_audio, random_crop, write_audio
from .augment import AugmentConfig, Augmenter, mix_at_snr
from .corpus import Corpus, CorpusError, open_corpus, write_corpus_json
from .readers import read_kaldi, read_voxceleb
from .table import UtteranceTable
from .trials import TrialError, TrialList, parse_trials, write_trials

__all__ = [
    "SAMPLE_RATE", "AudioError", "SkipLog", "check_audio", "fixed_crop", "load_audio", "random_crop", "write_audio",
    "AugmentConfig", "Augmenter", "mix_at_snr", "Corpus", "CorpusError", "open_corpus", "write_corpus_json",
    "read_kaldi", "read_voxceleb", "UtteranceTable", "TrialError", "TrialList", "parse_trials", "write_trials",
]
