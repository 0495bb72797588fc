"""Checkpoints: round trip, user state_dicts, TorchScript, and one-line errors for bad files."""

import json
import pickle

import pytest
import torch

from napari_bavis import models
from napari_bavis.errors import CheckpointError
from napari_bavis.grid import Grid
from napari_bavis.models.sfcn import SFCN

TINY_BA3D = {"channels": [2, 4], "final_channels": 4, "volume_shape": [12, 14, 10]}
TINY_GRID = Grid.from_bbox(((0, 11), (0, 13), (0, 9)), 1.0)
SMALL_SFCN = {"channel_number": [2, 2, 2, 2, 2, 2]}


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and 0 < len(msg) < 400, msg
    return msg


@pytest.fixture
def tiny():
    torch.manual_seed(3)
    model = models.build("ba3d", **TINY_BA3D).eval()
    with torch.no_grad():  # non-trivial BN statistics, so buffers matter in the round trip
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    card = models.default_card(
        "ba3d", name="tiny", version="1.2.3", grid=TINY_GRID.to_dict(),
        training_age_range=[40.0, 90.0],
        bias_correction={"method": "offset", "alpha": -0.2, "beta": 12.0},
        licence="CC-BY-4.0", training_data="synthetic",
    )
    return model, card


def test_round_trip_keeps_outputs_and_card(tmp_path, tiny):
    model, card = tiny
    path = tmp_path / "tiny.pt"
    saved = models.save_checkpoint(path, model, card)
    assert saved.checksum == models.state_dict_checksum(model.state_dict())
    assert saved.architecture_kwargs == TINY_BA3D  # filled in from the built model
    loaded, loaded_card = models.load_checkpoint(path, device="cpu")
    assert not loaded.training and loaded.architecture == "ba3d"
    assert loaded_card.to_dict() == saved.to_dict()
    assert loaded_card.bias_correction == {"method": "offset", "alpha": -0.2, "beta": 12.0}
    x, sex = torch.rand(2, 1, 12, 14, 10), torch.tensor([[0.0], [1.0]])
    with torch.no_grad():
        assert torch.equal(model(x, sex), loaded(x, sex))
    # the file is plain data: readable with weights_only and JSON-able card
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert raw["format"] == "napari-bavis-checkpoint" and raw["format_version"] == 1
    assert json.loads(json.dumps(raw["card"])) == raw["card"]


def test_card_round_trips_unknown_keys_and_summarises(tiny):
    _, card = tiny
    d = card.to_dict()
    d["future_field"] = {"x": 1}
    again = models.ModelCard.from_dict(d)
    assert again.to_dict() == d
    text = again.summary()
    assert "offset" in text and "40-90 years" in text and "research use only" in text
    assert "12x14x10 voxels at 1x1x1 mm" in text


@pytest.mark.parametrize("field, value, words", [
    ("task", "segmentation", "task must be one of"),
    ("input_kind", "ct", "input_kind"),
    ("training_age_range", [90, 40], "training_age_range"),
    ("bias_correction", {"method": "regression-on-age", "alpha": 0.0, "beta": 1.0}, "divide by zero"),
    ("sex_encoding", {"F": 0}, "sex_encoding"),
    ("architecture", "unet", "not built in"),
])
def test_card_validation_names_the_bad_field(tiny, field, value, words):
    _, card = tiny
    setattr(card, field, value)
    with pytest.raises(CheckpointError) as err:
        card.validate()
    assert words in _one_line(err)


def test_tampered_weights_fail_the_checksum(tmp_path, tiny):
    model, card = tiny
    path = tmp_path / "t.pt"
    models.save_checkpoint(path, model, card)
    raw = torch.load(path, weights_only=True, map_location="cpu")
    raw["state_dict"]["head.out.bias"] += 1.0
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as err:
        models.load_checkpoint(path, device="cpu")
    assert "checksum" in _one_line(err)


def test_newer_format_is_refused(tmp_path, tiny):
    model, card = tiny
    path = tmp_path / "t.pt"
    models.save_checkpoint(path, model, card)
    raw = torch.load(path, weights_only=True, map_location="cpu")
    raw["format_version"] = 7
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as err:
        models.load_checkpoint(path, device="cpu")
    assert "newer" in _one_line(err)


def test_dataparallel_sfcn_state_dict_loads_with_architecture_name(tmp_path):
    torch.manual_seed(5)
    published = torch.nn.DataParallel(SFCN(channel_number=SMALL_SFCN["channel_number"]))
    state = published.state_dict()
    assert all(k.startswith("module.") for k in state)
    path = tmp_path / "run_20190719_00_epoch_best_mae.p"
    torch.save(state, path)
    model, card = models.load_checkpoint(path, device="cpu", architecture="sfcn", architecture_kwargs=SMALL_SFCN)
    assert card.architecture == "sfcn" and card.sex_encoding is None and card.input_kind == "t1"
    assert card.grid["shape"] == [160, 192, 160]
    for k, v in published.module.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    x = torch.rand(1, 1, 160, 192, 160)
    published.eval()
    with torch.no_grad():
        logp = published.module(x)
        expected = (logp.exp() * (42.5 + torch.arange(40.0))).sum()
        assert model(x).item() == pytest.approx(expected.item(), abs=1e-4)


def test_state_dict_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    state = models.build("ba3d", **TINY_BA3D).state_dict()
    state.pop("head.out.weight")
    state["extra.weight"] = torch.zeros(1)
    state["trunk.block_0.conv.weight"] = torch.zeros(3, 1, 3, 3, 3)
    path = tmp_path / "user.pt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        models.load_checkpoint(path, device="cpu", architecture="ba3d", architecture_kwargs=TINY_BA3D)
    msg = _one_line(err)
    assert "missing keys: head.out.weight" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "trunk.block_0.conv.weight file (3, 1, 3, 3, 3) vs model (2, 1, 3, 3, 3)" in msg


def test_plain_state_dict_needs_an_architecture(tmp_path):
    path = tmp_path / "user.pt"
    torch.save(models.build("ba3d", **TINY_BA3D).state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        models.load_checkpoint(path, device="cpu")
    assert "architecture=" in _one_line(err)


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_payloads_are_refused_without_running_them(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Payload()}, path)
    with pytest.raises(CheckpointError) as err:
        models.load_checkpoint(path, device="cpu", architecture="ba3d")
    assert "refused" in _one_line(err)
    assert "pickled code ran" not in capsys.readouterr().out
    path2 = tmp_path / "evil.pkl"
    path2.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError) as err:
        models.load_checkpoint(path2, device="cpu")
    _one_line(err)
    assert "pickled code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["truncated", "garbage", "text", "empty", "foreign_zip", "tensor"])
def test_broken_or_foreign_files_give_one_readable_line(tmp_path, tiny, kind):
    model, card = tiny
    path = tmp_path / "bad.pt"
    if kind == "truncated":
        models.save_checkpoint(path, model, card)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "foreign_zip":
        import zipfile
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("hello.txt", "hi")
    elif kind == "tensor":
        torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError) as err:
        models.load_checkpoint(path, device="cpu", architecture="ba3d")
    assert "bad.pt" in _one_line(err)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError) as err:
        models.load_checkpoint(tmp_path / "nope.pt", device="cpu")
    assert "nope.pt" in _one_line(err)


def test_torchscript_predicts_but_is_flagged_not_hookable(tmp_path, tiny):
    model, card = tiny
    card.checksum = None
    scripted = torch.jit.trace(model, (torch.rand(1, 1, 12, 14, 10), torch.zeros(1, 1)))
    path = tmp_path / "ts.pt"
    torch.jit.save(scripted, str(path), _extra_files={"bavis_card.json": card.to_json()})
    loaded, loaded_card = models.load_checkpoint(path, device="cpu")
    assert loaded.hookable is False and "hookable" in loaded.note
    assert loaded_card.name == "tiny" and loaded_card.bias_correction["method"] == "offset"
    x = torch.rand(1, 1, 12, 14, 10)
    with torch.no_grad():
        assert torch.allclose(loaded(x, torch.ones(1, 1)), model(x, torch.ones(1, 1)), atol=1e-6)
    bare = tmp_path / "bare.pt"
    torch.jit.save(scripted, str(bare))
    with pytest.raises(CheckpointError) as err:
        models.load_checkpoint(bare, device="cpu")
    assert "card" in _one_line(err)


def test_siamese_checkpoint_keeps_references_and_similarity(tmp_path):
    torch.manual_seed(4)
    kw = {"channels": [2, 4], "final_channels": 4, "head": [16, 8], "volume_shape": [12, 14, 10]}
    enc = models.build("siamese3d", **kw).eval()
    refs = {"healthy": [1.0] + [0.0] * 7, "AD-like": [0.0] * 7 + [1.0]}
    card = models.default_card("siamese3d", name="pairs", grid=TINY_GRID.to_dict(), reference_embeddings=refs)
    assert card.sex_encoding is None and card.task == "siamese"
    models.save_checkpoint(tmp_path / "s.pt", enc, card)
    loaded, loaded_card = models.load_checkpoint(tmp_path / "s.pt", device="cpu")
    a, b = torch.rand(12, 14, 10), torch.rand(12, 14, 10) * 3
    before, after = models.compare(enc, card, a, b), models.compare(loaded, loaded_card, a, b)
    assert after.to_dict() == before.to_dict()
    assert loaded_card.reference_embeddings == refs
