"""`dgm show NAME`: what a registered entry is and which settings a recipe may give it."""

from __future__ import annotations

from dgm.cli import main


def show(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["show", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_show_lists_a_family_s_settings_with_types_and_defaults(capsys):
    code, out, _ = show(capsys, "core:diffusion")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "core:diffusion  (family, plugin core)"
    assert "Denoising diffusion" in lines[1] and "settings ([family] keys):" in out
    settings = [line.split()[0] for line in lines[lines.index("settings ([family] keys):") + 1:]]
    assert settings == ["timesteps", "beta_schedule", "prediction", "sampler",
                        "sampling_steps", "guidance", "snap_to_grid", "conditional"]  # no ctx
    assert any(line.split() == ["timesteps", "an", "integer", "at", "least", "1", "default",
                                        "1000"]
               for line in lines)
    assert "one of 'ddpm', 'ddim', 'dpm-solver++'  default \"dpm-solver++\"" in out


def test_show_leaves_out_the_arguments_the_family_passes_to_a_network(capsys):
    code, out, _ = show(capsys, "conv1d-denoiser")  # a bare name works too
    assert code == 0 and out.startswith("core:conv1d-denoiser  (network, plugin core)")
    names = [line.split()[0] for line in out.splitlines()[3:]]
    assert names == ["hidden", "blocks", "kernel_size", "dropout", "padding_mode"]
    _, out, _ = show(capsys, "image:conv-decoder")
    assert "channels  a list of an integer or absent  optional" in out
    assert "data_shape" not in out and "latent_dim" not in out and "param_channels" not in out


def test_show_describes_modalities_recipes_and_entries_without_settings(capsys):
    _, out, _ = show(capsys, "image:image")
    assert "default denoiser: core:unet2d" in out and "default likelihood:" in out
    _, out, _ = show(capsys, "image:digits-vae-conv")
    assert "(recipe, plugin image)" in out and "digits-vae-conv.toml" in out
    _, out, _ = show(capsys, "core:standard-normal")
    assert "settings: none" in out  # its only argument, shape, is dgm's


def test_show_an_unknown_name_suggests_the_closest(capsys):
    code, _, err = show(capsys, "core:difusion")
    assert code == 2
    assert "unknown name 'core:difusion'. Did you mean 'core:diffusion' (family)?" in err
    code, _, err = show(capsys, "--kind", "network", "mlp-denoser")
    assert code == 2 and "unknown network 'mlp-denoser'. Did you mean 'mlp-denoiser'?" in err
