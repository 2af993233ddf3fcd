"""A ctypes binding to libespeak-ng (shipped by the pip package ``espeakng-loader``).

Only what SynthVox needs: initialise the library in synchronous retrieval mode, choose a voice
(``"en-us+m3"``: base language voice + variant), set rate / pitch / pitch range / volume / word
gap, and synthesise text into an int16 array at the library's native rate (22050 Hz).

espeak-ng keeps global state, so there is one :class:`Espeak` per process (:func:`get_espeak`),
and every call holds a lock. For parallel generation use one process per worker; each worker
initialises its own library.

Determinism: each call reseeds espeak's random number generator (and libc's ``rand``, which the
Klatt synthesiser uses) from ``seed``, but the library also keeps state that no API resets (the
pitch-flutter phase, the wave generator's phase and sample counters): the same call gives
different samples depending on what was synthesised before it in the process. :func:`run_isolated`
runs a function in a child forked from a process that has never synthesised, so its output
depends only on the function itself (POSIX only; it costs about 10 ms per call).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import pickle
import threading
import traceback
from pathlib import Path

import numpy as np

log = logging.getLogger("ssrl_lab.data.espeak")

# espeak_AUDIO_OUTPUT
AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_Initialize options
INITIALIZE_DONT_EXIT = 0x8000
# espeak_POSITION_TYPE
POS_CHARACTER = 1
# espeak_Synth flags
CHARS_UTF8 = 1
ENDPAUSE = 0x1000
# espeak_PARAMETER
PARAM_RATE = 1
PARAM_VOLUME = 2
PARAM_PITCH = 3
PARAM_RANGE = 4
PARAM_WORDGAP = 7

#: Voice variants that sound like people (robots, whispers and croaks left out).
HUMAN_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4",
    "adam", "Annie", "linda", "steph", "david", "john", "paul", "robert", "max", "belinda", "ed",
)
#: English base voices (accents), by the identifier espeak_SetVoiceByName accepts.
ENGLISH_BASES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
                 "en-gb-x-gbcwmd", "en-us-nyc")

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    """libespeak-ng is missing, failed to initialise, or refused a voice / parameter / text."""


def data_path() -> Path:
    """The ``espeak-ng-data`` directory of the ``espeakng-loader`` package."""
    try:
        import espeakng_loader
    except ImportError as e:  # pragma: no cover - it is a declared dependency
        raise EspeakError("the pip package espeakng-loader is not installed (pip install espeakng-loader)") from e
    return Path(espeakng_loader.get_data_path())


def library_path() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_library_path())


def variant_info(name: str) -> dict:
    """Parse ``voices/!v/<name>``: ``{"name", "gender" ("male"|"female"|"unknown"), "klatt"}``."""
    path = data_path() / "voices" / "!v" / name
    if not path.is_file():
        raise EspeakError(f"espeak voice variant {name!r} not found ({path})")
    gender, klatt = "unknown", 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "gender" and parts[1] in ("male", "female"):
            gender = parts[1]
        elif len(parts) >= 2 and parts[0] == "klatt":
            klatt = int(parts[1])
    return {"name": name, "gender": gender, "klatt": klatt}


def list_variants(human_only: bool = True) -> list[str]:
    """Variant names present in the data directory's ``voices/!v`` (sorted)."""
    names = sorted(p.name for p in (data_path() / "voices" / "!v").iterdir() if p.is_file())
    if human_only:
        keep = set(HUMAN_VARIANTS)
        names = [n for n in names if n in keep]
    return names


def list_base_voices(prefix: str = "en") -> list[str]:
    """Language voices whose identifier starts with ``prefix`` (lower-case, as espeak names them)."""
    out = []
    for p in sorted((data_path() / "lang").rglob("*")):
        if p.is_file() and p.name.lower().startswith(prefix.lower()):
            out.append(p.name.lower())
    return out


class Espeak:
    """One initialised libespeak-ng in synchronous retrieval mode. Use :func:`get_espeak`."""

    def __init__(self, data_dir: str | Path | None = None):
        lib_file = library_path()
        try:
            self._lib = ctypes.CDLL(str(lib_file))
        except OSError as e:
            raise EspeakError(f"cannot load {lib_file}: {e}") from e
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        libc_name = ctypes.util.find_library("c")
        self._libc = ctypes.CDLL(libc_name) if libc_name else None

        path = str(data_dir or data_path()).encode()
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, path, INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data path {path.decode()}")
        self.sample_rate = int(rate)
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()
        self._voice: str | None = None
        self.used = False  # True once this process has synthesised (its state is no longer pristine)

    def _on_audio(self, wav, n, events) -> int:
        if wav and n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        return 0  # 0 = continue synthesis

    def set_voice(self, voice: str) -> None:
        err = self._lib.espeak_SetVoiceByName(voice.encode())
        if err != 0:
            raise EspeakError(f"espeak refused voice {voice!r} (error {err}); base voices: "
                              f"{', '.join(list_base_voices())}; variants: {', '.join(list_variants(False)[:20])}...")
        self._voice = voice

    def _set(self, name: str, param: int, value: int, lo: int, hi: int) -> None:
        if not lo <= value <= hi:
            raise EspeakError(f"espeak parameter {name}={value} out of range [{lo}, {hi}]")
        err = self._lib.espeak_SetParameter(param, int(value), 0)
        if err != 0:
            raise EspeakError(f"espeak_SetParameter({name}={value}) failed (error {err})")

    def synthesize(self, text: str, voice: str = "en", rate: int = 175, pitch: int = 50, pitch_range: int = 50,
                   volume: int = 100, wordgap: int = 0, seed: int = 0) -> np.ndarray:
        """Speak ``text``; returns int16 samples at :attr:`sample_rate` Hz.

        ``rate`` in words per minute (80-450), ``pitch`` and ``pitch_range`` 0-100 (50 = the
        voice's default), ``volume`` 0-200, ``wordgap`` in units of 10 ms, ``seed`` reseeds the
        synthesiser's noise generators so the same call gives the same samples.
        """
        if not text or not text.strip():
            raise EspeakError("espeak: empty text")
        with self._lock:
            self.set_voice(voice)
            self._set("rate", PARAM_RATE, int(rate), 80, 450)
            self._set("pitch", PARAM_PITCH, int(pitch), 0, 100)
            self._set("range", PARAM_RANGE, int(pitch_range), 0, 100)
            self._set("volume", PARAM_VOLUME, int(volume), 0, 200)
            self._set("wordgap", PARAM_WORDGAP, int(wordgap), 0, 100)
            seed = int(seed) % (2**31 - 1)
            self._lib.espeak_ng_SetRandSeed(seed)
            if self._libc is not None:
                self._libc.srand(ctypes.c_uint(seed))
            self._chunks = []
            self.used = True
            buf = text.encode("utf-8") + b"\0"
            err = self._lib.espeak_Synth(buf, len(buf), 0, POS_CHARACTER, 0, CHARS_UTF8 | ENDPAUSE, None, None)
            if err != 0:
                raise EspeakError(f"espeak_Synth failed (error {err}) for voice {voice!r}, text {text[:40]!r}")
            self._lib.espeak_Synchronize()
            data = b"".join(self._chunks)
            self._chunks = []
        return np.frombuffer(data, dtype=np.int16).copy()


_INSTANCE: Espeak | None = None
_INSTANCE_LOCK = threading.Lock()


def get_espeak() -> Espeak:
    """This process's :class:`Espeak` (initialised on first use)."""
    global _INSTANCE
    with _INSTANCE_LOCK:
        if _INSTANCE is None:
            _INSTANCE = Espeak()
            log.debug("espeak-ng initialised at %d Hz", _INSTANCE.sample_rate)
        return _INSTANCE


def run_isolated(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` in a child forked from this process and return its result.

    The child inherits this process's espeak-ng state; when this process has never synthesised
    (``get_espeak().used`` is False), every call starts from the same pristine state, so
    synthesis inside ``fn`` is reproducible whatever ran before. The result travels back pickled;
    an exception in the child is re-raised here as :class:`EspeakError` with its traceback.
    """
    inst = get_espeak()
    if inst.used:
        raise EspeakError("run_isolated: this process has already synthesised in-process, so its espeak "
                          "state is not pristine and results would depend on history; isolate every call")
    if not hasattr(os, "fork"):  # pragma: no cover - Windows
        raise EspeakError("run_isolated needs os.fork (POSIX)")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            try:
                payload = ("ok", fn(*args, **kwargs))
            except BaseException:
                payload = ("error", traceback.format_exc())
            with os.fdopen(write_fd, "wb") as fh:
                pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise EspeakError(f"run_isolated: child {pid} died without a result (wait status {status})")
    kind, value = pickle.loads(data)
    if kind == "error":
        raise EspeakError(f"run_isolated: {getattr(fn, '__name__', fn)} failed in the child:\n{value}")
    return value
