import torch

from core.stages import Stages, weights_fingerprint


def test_stages_resume_with_the_generator_where_it_was(tmp_path):
    def run(stages: Stages, calls: list) -> list:
        generator = torch.Generator().manual_seed(0)

        def draw(name):
            calls.append(name)
            return torch.rand(3, generator=generator)

        return [stages(name, lambda: draw(name), generator) for name in ("a", "b", "c")]

    whole = run(Stages(None), [])
    first = run(Stages(tmp_path, {"seed": 0}), calls := [])
    assert calls == ["a", "b", "c"] and all(torch.equal(x, y) for x, y in zip(first, whole))
    (tmp_path / "c.stage.pt").unlink()  # stopped before the last stage
    (tmp_path / "b.stage.pt").write_bytes(b"damaged")  # and the one before it half written: computed again
    again = run(resumed := Stages(tmp_path, {"seed": 0}), calls := [])
    assert calls == ["b", "c"] and all(torch.equal(x, y) for x, y in zip(again, whole))
    assert list(resumed.loaded) == ["a"] and resumed.loaded["a"]["seconds"] >= 0  # what an earlier run computed
    (tmp_path / "judge.pt").write_bytes(b"a file of the user's")
    run(Stages(tmp_path, {"seed": 1}), calls := [])  # another run's stages are not taken
    assert calls == ["a", "b", "c"] and (tmp_path / "judge.pt").is_file()  # and only stages are dropped
    scoped = Stages(tmp_path, {"seed": 1}).scope("stream_2")
    assert scoped("a", lambda: 7) == 7 and (tmp_path / "stream_2__a.stage.pt").is_file()


def test_weights_fingerprint_follows_the_values():
    model = torch.nn.Linear(3, 2)
    model.register_buffer("scale", torch.tensor(2.0))  # a 0-dim buffer too
    before = weights_fingerprint(model)
    assert weights_fingerprint(model) == before
    with torch.no_grad():
        model.bias[0] += 1e-6
    assert weights_fingerprint(model) != before
