"""Token and tensor conditions: the text encoding, the core's token and tensor encoders,
and sampling given a text or a file from the CLI and from Python."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dgm.assembly import build_data, build_family
from dgm.cli import main
from dgm.conditions import TensorEncoder, TokenEncoder
from dgm.contract import Condition
from dgm.errors import RecipeError
from dgm.recipes import Recipe
from dgm.sampling import sample
from dgm.testing import tiny_recipe, write_recipe
from tests.conftest import fit_for_epochs

LETTERS = Condition.of_tokens(("<pad>", *"abcdefghijklmnopqrstuvwxyz"), 6)
PHONEMES = Condition.of_tokens(("<pad>", "t", "h", "th", "e"), 4)


def test_text_is_encoded_by_longest_vocabulary_match_and_padded():
    tokens = LETTERS.encode_text("seven")
    assert tokens.tolist() == [19, 5, 22, 5, 14, 0] and tokens.dtype == torch.int64
    assert LETTERS.decode_tokens(tokens) == "seven"
    assert PHONEMES.encode_text("the").tolist() == [3, 4, 0, 0]  # "th", not "t" "h"
    with pytest.raises(ValueError, match=r"'!' at position 5 of 'seven!' is not in the "
                                         r"vocabulary"):
        LETTERS.encode_text("seven!")
    with pytest.raises(ValueError, match="'sevens!' is 7 tokens|position 6"):
        LETTERS.encode_text("sevens!")
    with pytest.raises(ValueError, match="at most 6"):
        LETTERS.encode_text("sevenss")


def test_the_token_encoder_ignores_padding_and_tells_texts_apart():
    torch.manual_seed(0)
    encoder = TokenEncoder(LETTERS, dim=8, width=16, layers=1, heads=2).eval()
    texts = torch.stack([LETTERS.encode_text(t) for t in ("one", "two", "one", "")])
    out = encoder(texts)
    assert out.shape == (4, 8) and torch.isfinite(out).all()
    torch.testing.assert_close(out[0], out[2])
    assert not torch.allclose(out[0], out[1], atol=1e-4)
    # the embedding of padding plays no part: changing it leaves every encoding alone
    with torch.no_grad():
        encoder.tokens.weight[0] += 5.0
    torch.testing.assert_close(encoder(texts[:3]), out[:3])
    out.sum().backward()  # trainable end to end
    assert encoder.tokens.weight.grad is not None


def test_the_tensor_encoder_keeps_where_things_are_and_pools_large_conditions():
    torch.manual_seed(0)
    small = TensorEncoder(Condition.of_tensor("image:image", (1, 4, 4)), dim=8)
    left, right = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    left[..., 0], right[..., -1] = 1.0, 1.0
    assert not torch.allclose(small(left), small(right), atol=1e-4)
    mel = TensorEncoder(Condition.of_tensor("audio:audio", (32, 64)), dim=8, resolution=4)
    assert mel(torch.randn(3, 32, 64)).shape == (3, 8)
    assert sum(p.numel() for p in mel.out.parameters()) == 32 * 4 * 8 + 8
    with pytest.raises(ValueError, match="tensor conditions, not 'tokens'"):
        TensorEncoder(LETTERS)
    with pytest.raises(ValueError, match=r"\(C, H, W\) conditions"):
        TensorEncoder(Condition.of_tensor("x:x", (1, 2, 2, 2)))


@pytest.mark.slow
def test_a_text_conditioned_model_puts_more_mass_on_its_own_digit_name(host):
    recipe = Recipe({"data": {"name": "image:digits", "condition": "text", "batch_size": 64},
                     "family": {"name": "core:autoregressive"},
                     "condition": {"use": True, "dim": 16},
                     "networks": {"autoregressive": {"hidden": 32, "layers": 3},
                                  "condition": {"width": 32, "layers": 1}}}, "test")
    train = build_data(recipe, host.registry, "train")
    test = build_data(recipe, host.registry, "test")
    assert train.info.condition.kind == "tokens"
    torch.manual_seed(0)
    family = build_family(recipe, host.registry, train.info)
    fit_for_epochs(family, train, epochs=6)
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    names = torch.stack([train.info.condition.encode_text(w) for w in words])
    x = torch.stack([test[i]["x"] for i in range(200)])
    digit = torch.tensor([words.index(train.info.condition.decode_tokens(test[i]["c"]))
                          for i in range(200)])
    with torch.no_grad():
        scores = torch.stack([family.log_likelihood(x, names[k].expand(200, -1)).values
                              for k in range(10)], 1)
    assert float((scores.argmax(1) == digit).float().mean()) > 0.5  # chance is 0.1


def test_sampling_given_a_text_from_the_cli_and_from_python(in_tmp, capsys):
    tables = tiny_recipe("image:digits", "core:vae", in_tmp / "run", steps=2)
    tables["data"]["condition"] = "text"
    tables["condition"] = {"use": True, "dim": 8}
    assert main(["run", str(write_recipe(tables, in_tmp / "recipe.toml"))]) == 0
    report = json.loads((in_tmp / "run" / "evaluation.json").read_text())
    assert report["method"].endswith("given c (tokens)")
    conditions = torch.load(in_tmp / "run" / "samples" / "conditions.pt")
    assert conditions.shape == (tables["sample"]["n"], 5)  # the test split's names
    capsys.readouterr()
    assert main(["sample", "run", "--n", "3", "--text", "seven", "--out", "sevens"]) == 0
    assert len(list((in_tmp / "sevens").glob("sample-*.png"))) == 3
    assert sample("run", 4, condition="seven", seed=1).shape == (4, 1, 8, 8)
    assert torch.equal(sample("run", 2, condition="seven", seed=1),
                       sample("run", 2, condition="seven", seed=1))
    capsys.readouterr()
    assert main(["sample", "run", "--text", "seven!"]) == 2
    err = capsys.readouterr().err
    assert "--text 'seven!'" in err and "'!' at position 5" in err
    assert main(["sample", "run", "--condition", "7"]) == 2
    assert "conditioned on a token sequence" in capsys.readouterr().err
    assert main(["sample", "run", "--text", "one", "--condition", "1"]) == 2
    assert "not --condition and --text" in capsys.readouterr().err


def test_sampling_given_a_thumbnail_file(in_tmp, capsys):
    tables = tiny_recipe("image:digits", "core:vae", in_tmp / "run", steps=2)
    tables["data"]["condition"] = "thumbnail"
    tables["condition"] = {"use": True, "dim": 8}
    assert main(["run", str(write_recipe(tables, in_tmp / "recipe.toml"))]) == 0
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(in_tmp / "small.png")
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(in_tmp / "big.png")
    capsys.readouterr()
    assert main(["sample", "run", "--n", "2", "--condition-file", "small.png",
                 "--out", "given"]) == 0
    assert len(list((in_tmp / "given").glob("sample-*.png"))) == 2
    assert main(["sample", "run", "--condition-file", "big.png"]) == 2
    err = capsys.readouterr().err
    assert "shaped 1x8x8" in err and "image:image tensor shaped 1x4x4" in err
    assert main(["sample", "run", "--text", "seven"]) == 2
    assert "--condition-file PATH" in capsys.readouterr().err
    with pytest.raises(RecipeError, match="shaped 2x2"):
        sample("run", 1, condition=torch.zeros(2, 2))
    assert sample("run", 1, condition=torch.zeros(1, 4, 4)).shape == (1, 1, 8, 8)


def test_a_text_for_a_class_conditioned_run_names_what_it_accepts(in_tmp, capsys):
    tables = tiny_recipe("image:digits", "core:vae", in_tmp / "run", steps=2)
    tables["condition"] = {"use": True, "dim": 8}
    tables["evaluate"] = {"metrics": [], "likelihood": {"k": 2}}
    assert main(["run", str(write_recipe(tables, in_tmp / "recipe.toml"))]) == 0
    capsys.readouterr()
    assert main(["sample", "run", "--text", "seven"]) == 2
    err = capsys.readouterr().err
    assert "conditioned on a class: one of 0, 1" in err and "--condition NAME" in err
