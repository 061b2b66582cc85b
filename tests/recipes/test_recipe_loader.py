"""`load_recipe` accepts exactly the documented keys and types, and says what is wrong."""

import pytest

from griffin_megatron.recipes import RecipeError, load_recipe, stated_cluster


def write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_a_valid_recipe(tmp_path):
    path = write(tmp_path, "# cluster: 2 nodes x 4 A100-40GB\npreset: griffin-tiny\n"
                           "tensor-model-parallel-size: 2\nlr: 3.0e-4\nsequence-parallel: true\n"
                           "data-path: [0.5, /a, 0.5, /b]\n")
    assert load_recipe(path) == {"preset": "griffin-tiny", "tensor-model-parallel-size": 2,
                                 "lr": 3.0e-4, "sequence-parallel": True,
                                 "data-path": [0.5, "/a", 0.5, "/b"]}
    cluster = stated_cluster(path)
    assert (cluster.nodes, cluster.gpus_per_node, cluster.gpu, cluster.memory_gb) == (
        2, 4, "A100-40GB", 40.0)
    assert cluster.gpus == 8


@pytest.mark.parametrize(
    "text, message",
    [
        ("tensor_model_parallel_size: 2\n", "unknown key 'tensor_model_parallel_size' (did you mean 'tensor-model-parallel-size'?)"),
        ("learning-rate: 0.1\n", "unknown key 'learning-rate'"),
        ("tensor-model-parallel-size: '2'\n", "'tensor-model-parallel-size' must be an integer"),
        ("micro-batch-size: true\n", "'micro-batch-size' must be an integer"),
        ("sequence-parallel: 1\n", "'sequence-parallel' must be true or false"),
        ("lr-decay-style: cos\n", "'lr-decay-style' is 'cos'; choose one of constant, linear, cosine"),
        ("backend: cuda\n", "choose one of local, te"),
        ("lr: -1.0\n", "'lr' must not be negative"),
        ("- preset\n", "must be a YAML mapping"),
        ("preset: [\n", "is not valid YAML"),
    ],
)
def test_bad_recipes_fail_with_one_sentence(tmp_path, text, message):
    with pytest.raises(RecipeError) as error:
        load_recipe(write(tmp_path, text))
    assert message in str(error.value)
    assert str(error.value).endswith(".")


def test_unknown_recipe_name_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="griffin-14b"):
        load_recipe("griffin-15b")
