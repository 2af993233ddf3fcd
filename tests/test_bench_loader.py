"""bench/loader.py and the issue-15 options of bench/train_throughput.py, at toy sizes on the CPU."""
import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_loader_bench_prints_every_combination(tmp_path, capsys):
    res = _load("loader").main(["--items", "2", "--repeats", "1", "--batch", "3", "--json", str(tmp_path / "l.json")])
    keys = {f"{m}/{s}/{w}" for m in ("DINO", "SSRL") for s in ("FLAC", "packed") for w in ("loader", "in-batch")}
    assert set(res["rates"]) == keys and all(v > 0 for v in res["rates"].values())
    for m, crops in (("DINO", 6), ("SSRL", 1)):
        b = res["batch_aug"][m]
        assert b["crops_per_item"] == crops and b["seconds_per_batch"] > 0 and b["batch"] == 3
    out = capsys.readouterr().out
    assert "x today" in out and "in-batch augmentation on this CPU" in out
    assert json.loads((tmp_path / "l.json").read_text())["items"] == 2


def test_train_throughput_with_in_batch_augmentation_from_packed_shards(tmp_path, capsys):
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"rows": [{"method": "DINO", "batch": 4, "utts_per_s": 1e6, "oom": False}]}))
    res = _load("train_throughput").main(["--device", "cpu", "--encoder", "micro", "--speakers", "6", "--utts", "6",
                                          "--dino-batch", "4", "--ssrl-batch", "4", "--k", "6", "--steps", "2",
                                          "--workers", "0", "--prototypes", "64", "--dir", str(tmp_path),
                                          "--augment-on", "batch", "--packed", "--bare-json", str(bare)])
    assert res["dino"]["steps"] == 2 and res["args"]["augment_on"] == "batch" and res["args"]["packed"]
    assert 0 < res["share_of_bare_step"]["dino"] < 1 and "ssrl" not in res["share_of_bare_step"]
    out = capsys.readouterr().out
    assert "augment_on=batch, packed shards" in out and "% of the bare step" in out
