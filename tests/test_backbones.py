"""Text backbones and multimodal checkpoints: the packaged MiniLM (real weights), and tiny LLaMA,
BLIP-2 and InstructBLIP-Video models built here from real transformers classes and saved to folders."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from goalcraft.models.backbones import (
    BackboneError,
    BackboneSpec,
    load_multimodal_language_model,
    load_multimodal_qformer,
    load_text_backbone,
    mean_pool,
)
from goalcraft.models.checkpoints import CheckpointError
from goalcraft.models.predictor import (
    PREDICTOR_CONFIGS,
    GoalPredictor,
    init_predictor_from_multimodal,
    predictor_config_from_multimodal,
)

TINY = PREDICTOR_CONFIGS["tiny"]
WORDS = "chop down the tree cut a open inventory craft wooden pickaxe mine some stone with your hands".split()
# The "tiny" predictor's Q-Former: hidden 64, 2 layers, 4 heads, FFN 128, reading 48-d states.
TINY_QFORMER = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                    encoder_hidden_size=48, cross_attention_frequency=1)


def save_tokenizer(folder: Path) -> None:
    """A word-level tokenizer over WORDS with pad/unk/eos, built offline and saved like any HF tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            eos_token="</s>").save_pretrained(folder)


def llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=100, max_position_embeddings=64)


def build_multimodal(kind: str, text_config=None, **qformer_changes):
    """A tiny randomly initialised BLIP-2 / InstructBLIP-Video ForConditionalGeneration in eval mode."""
    import transformers as tf

    qformer = {**TINY_QFORMER, **qformer_changes}
    text = (text_config or llama_config()).to_dict()
    vision = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                  image_size=32, patch_size=16)
    if kind == "blip2":
        config = tf.Blip2Config(vision_config=tf.Blip2VisionConfig(**vision).to_dict(),
                                qformer_config=tf.Blip2QFormerConfig(**qformer).to_dict(),
                                text_config=text, num_query_tokens=32)
        model = tf.Blip2ForConditionalGeneration(config)
    else:
        config = tf.InstructBlipVideoConfig(
            vision_config=tf.InstructBlipVideoVisionConfig(**vision).to_dict(),
            qformer_config=tf.InstructBlipVideoQFormerConfig(vocab_size=100, max_position_embeddings=64,
                                                             **qformer).to_dict(),
            text_config=text, num_query_tokens=32)
        model = tf.InstructBlipVideoForConditionalGeneration(config)
    with torch.no_grad():  # query tokens start at zero and LayerNorms at 1/0: make every value distinctive
        model.query_tokens.normal_()
        for p in model.qformer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def minilm():
    return load_text_backbone(BackboneSpec()).eval()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from transformers import LlamaModel

    torch.manual_seed(0)
    model = LlamaModel(llama_config()).eval()
    folder = tmp_path_factory.mktemp("llama")
    model.save_pretrained(folder)
    save_tokenizer(folder)
    return folder, model


@pytest.fixture(scope="module", params=["blip2", "instructblip_video"])
def multimodal(request, tmp_path_factory):
    torch.manual_seed(1)
    model = build_multimodal(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    save_tokenizer(folder)
    return request.param, folder, model


# -- MiniLM ---------------------------------------------------------------------------------------


def test_minilm_tokenizes_with_padding_and_mask(minilm):
    assert minilm.hidden_size == 384
    assert type(minilm.model).__name__ == "BertModel"
    batch = minilm.tokenize(["chop down the tree", "open inventory"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape == (2, 6)  # [CLS] chop down the tree [SEP]
    assert mask.sum(1).tolist() == [6, 4]
    assert mask[1, 4:].tolist() == [0, 0]
    assert ids[1, 4:].tolist() == [minilm.tokenizer.pad_token_id] * 2
    with pytest.raises(TypeError, match="not one string"):
        minilm.tokenize("chop down the tree")


@torch.no_grad()
def test_minilm_paraphrases_are_closer_and_padding_changes_nothing(minilm):
    sentences = ["chop down the tree", "cut down a tree", "open inventory"]
    batch = minilm.tokenize(sentences)
    pooled = F.normalize(mean_pool(minilm(**batch), batch["attention_mask"]), dim=-1)
    assert pooled.shape == (3, 384)
    paraphrase, unrelated = float(pooled[0] @ pooled[1]), float(pooled[0] @ pooled[2])
    assert paraphrase > unrelated + 0.2, (paraphrase, unrelated)

    alone = minilm.tokenize(["open inventory"])
    padded = minilm.tokenize(["open inventory", "craft a wooden pickaxe and mine some stone with it"])
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # really padded
    one = mean_pool(minilm(**alone), alone["attention_mask"])[0]
    batched = mean_pool(minilm(**padded), padded["attention_mask"])[0]
    torch.testing.assert_close(batched, one, rtol=0, atol=1e-5)


# -- a tiny LLaMA -------------------------------------------------------------------------------


@torch.no_grad()
def test_causal_lm_loads_the_saved_weights(tiny_llama):
    folder, source = tiny_llama
    backbone = load_text_backbone(BackboneSpec(path=str(folder), kind="causal_lm"))
    assert type(backbone.model).__name__ == "LlamaModel"
    assert backbone.hidden_size == 32
    batch = backbone.tokenize(["chop down the tree", "open inventory"])
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["input_ids"][1, 2:].tolist() == [0, 0]  # [PAD]
    states = backbone(**batch)
    assert states.shape == (2, 4, 32) and states.dtype == torch.float32
    expected = source(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(states, expected, rtol=0, atol=1e-6)


# -- BLIP-2 / InstructBLIP-Video --------------------------------------------------------------------


@torch.no_grad()
def test_multimodal_language_model_is_the_base_llm(multimodal):
    kind, folder, source = multimodal
    backbone = load_text_backbone(BackboneSpec(path=str(folder), kind=kind))
    # Only the language model was built: no vision tower, no Q-Former, no LM head.
    assert type(backbone.model).__name__ == "LlamaModel"
    names = [n for n, _ in backbone.model.named_parameters()]
    assert names == [n for n, _ in source.language_model.base_model.named_parameters()]
    assert backbone.hidden_size == 32
    batch = backbone.tokenize(["craft a wooden pickaxe", "open inventory"])
    states = backbone(**batch)
    expected = source.language_model.base_model(**batch).last_hidden_state
    assert states.shape == (2, 4, 32)
    torch.testing.assert_close(states, expected, rtol=0, atol=1e-6)


@torch.no_grad()
def test_multimodal_qformer_seeds_the_predictor_exactly(multimodal):
    kind, folder, source = multimodal
    config = predictor_config_from_multimodal(folder, kind, name="tiny-mm", base=TINY)
    assert config == TINY.replace(name="tiny-mm", backbone=BackboneSpec(path=str(folder), kind=kind))

    torch.manual_seed(2)
    predictor = GoalPredictor(config).eval()
    info = init_predictor_from_multimodal(predictor, folder, kind)
    assert {k: info[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                 "encoder_hidden_size", "num_query_tokens", "text_hidden_size")} == {
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
        "encoder_hidden_size": 48, "num_query_tokens": 32, "text_hidden_size": 32}
    if kind == "blip2":
        assert info["dropped_keys"] == []
    else:  # the instruction embeddings and, per layer, the text-token FFN (6 tensors)
        assert len(info["dropped_keys"]) == 2 + 2 * 6
        assert {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                "encoder.layer.1.intermediate.dense.weight", "encoder.layer.0.output.LayerNorm.bias"} <= set(
            info["dropped_keys"])
    torch.testing.assert_close(predictor.query_tokens, source.query_tokens, rtol=0, atol=0)

    queries = torch.randn(2, 32, 64)
    states = torch.randn(2, 5, 48)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    ours = predictor.qformer(query_embeds=queries, encoder_hidden_states=states,
                             encoder_attention_mask=mask).last_hidden_state
    extra = {"input_ids": None} if kind == "instructblip_video" else {}
    theirs = source.qformer(query_embeds=queries, encoder_hidden_states=states, encoder_attention_mask=mask,
                            **extra).last_hidden_state
    assert ours.shape == (2, 32, 64)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # The video path end to end: the checkpoint's own query tokens reading frame features.
    frames = torch.randn(1, 4, 48)
    ours = predictor._qformer(predictor.query_tokens, frames, None)
    theirs = source.qformer(query_embeds=source.query_tokens, encoder_hidden_states=frames, **extra)
    torch.testing.assert_close(ours, theirs.last_hidden_state, rtol=0, atol=1e-5)

    # And the whole predictor on the checkpoint's language model runs.
    predictor.set_backbone(load_text_backbone(config.backbone))
    goals = predictor.predict_goal(["chop down the tree", "open inventory"])
    assert goals.shape == (2, TINY.goal_dim) and torch.isfinite(goals).all()


def test_multimodal_qformer_state_dict_names_match_goalcraft(multimodal):
    kind, folder, source = multimodal
    state, query_tokens, _ = load_multimodal_qformer(folder, kind)
    assert set(state) == set(GoalPredictor(TINY).qformer.state_dict())
    assert query_tokens.shape == (1, 32, 64)
    layernorm = source.qformer.layernorm if kind == "blip2" else source.qformer.embeddings.layernorm
    torch.testing.assert_close(state["layernorm.weight"], layernorm.weight.detach(), rtol=0, atol=0)


def test_width_mismatch_names_the_keys_and_loads_nothing(multimodal):
    kind, folder, _ = multimodal
    predictor = GoalPredictor(TINY.replace(name="narrow", qformer_hidden=32, qformer_intermediate=64))
    before = {k: v.clone() for k, v in predictor.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        init_predictor_from_multimodal(predictor, folder, kind)
    message = str(err.value)
    assert "qformer.layernorm.weight: checkpoint [64] vs model [32]" in message
    assert "query_tokens: checkpoint [1, 32, 64] vs model [1, 32, 32]" in message
    assert "nothing was loaded" in message
    assert all(torch.equal(before[k], v) for k, v in predictor.state_dict().items())


def test_unknown_and_missing_keys_are_refused(multimodal, tmp_path):
    kind, folder, _ = multimodal
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    weights = load_file(damaged / "model.safetensors")
    weights["qformer.encoder.layer.0.adapter.weight"] = torch.zeros(3)
    del weights["qformer.encoder.layer.1.output_query.dense.bias"]
    del weights["language_model.model.norm.weight"]
    save_file(weights, damaged / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(BackboneError) as err:
        load_multimodal_qformer(damaged, kind)
    message = str(err.value)
    assert "unknown keys (1): [qformer.encoder.layer.0.adapter.weight]" in message
    assert "missing keys (1): [qformer.encoder.layer.1.output_query.dense.bias]" in message
    # A language-model weight absent from the folder is an error, not a random initialisation.
    with pytest.raises(BackboneError, match=r"missing weights \[norm.weight\]"):
        load_multimodal_language_model(damaged, kind)


def test_checkpoint_with_sparser_cross_attention_converts_into_a_matching_config(tmp_path):
    # Real BLIP-2 Q-Formers cross-attend every 2nd layer; the derived config says so, and a predictor
    # built with cross-attention in every layer refuses the checkpoint instead of mis-loading it.
    torch.manual_seed(3)
    build_multimodal("blip2", cross_attention_frequency=2).save_pretrained(tmp_path)
    state, query_tokens, info = load_multimodal_qformer(tmp_path, "blip2")  # a faithful conversion of its own
    assert info["cross_attention_frequency"] == 2
    assert not any(k.startswith("encoder.layer.1.crossattention.") for k in state)
    config = predictor_config_from_multimodal(tmp_path, "blip2", base=TINY)
    assert config.qformer_cross_attention_frequency == 2
    predictor = GoalPredictor(config)
    init_predictor_from_multimodal(predictor, tmp_path, "blip2")
    assert torch.equal(predictor.query_tokens, query_tokens)
    with pytest.raises(BackboneError, match="cross_attention_frequency: checkpoint 2 vs goalcraft 1"):
        init_predictor_from_multimodal(GoalPredictor(TINY), tmp_path, "blip2")


@torch.no_grad()
def test_seq2seq_language_model_loads_its_encoder(tmp_path):
    from transformers import T5Config

    torch.manual_seed(4)
    t5 = T5Config(d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=8, vocab_size=100)
    source = build_multimodal("blip2", text_config=t5)
    source.save_pretrained(tmp_path)
    model = load_multimodal_language_model(tmp_path, "blip2")
    assert type(model).__name__ == "T5EncoderModel"
    ids = torch.tensor([[3, 4, 5, 6], [9, 10, 0, 0]])
    mask = (ids > 0).long()
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).last_hidden_state,
                               source.language_model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state,
                               rtol=0, atol=1e-6)


# -- errors ------------------------------------------------------------------------------------------


def test_folder_and_kind_errors(tmp_path, tiny_llama, multimodal):
    llama_folder, _ = tiny_llama
    kind, folder, _ = multimodal
    with pytest.raises(BackboneError, match="does not exist"):
        load_text_backbone(BackboneSpec(path=str(tmp_path / "nowhere"), kind="causal_lm"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="has no config.json"):
        load_text_backbone(BackboneSpec(path=str(tmp_path / "empty"), kind="causal_lm"))
    with pytest.raises(BackboneError, match="has no config.json"):
        load_multimodal_qformer(tmp_path / "empty", kind)
    with pytest.raises(BackboneError, match="backbone kind must be one of"):
        BackboneSpec(path=str(llama_folder), kind="vit")  # type: ignore[arg-type]
    with pytest.raises(BackboneError, match="not a multimodal checkpoint kind"):
        load_multimodal_qformer(folder, "causal_lm")
    with pytest.raises(BackboneError, match=f"holds model_type 'llama', but kind {kind!r} needs"):
        load_text_backbone(BackboneSpec(path=str(llama_folder), kind=kind))
    other = "instructblip_video" if kind == "blip2" else "blip2"
    with pytest.raises(BackboneError, match=f"but kind {other!r} needs '"):
        init_predictor_from_multimodal(GoalPredictor(TINY), folder, other)


def test_4bit_needs_a_gpu_and_bitsandbytes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackboneError, match="4-bit loading needs a CUDA GPU; none is visible"):
        load_text_backbone(BackboneSpec(load_in_4bit=True))

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else find_spec(name, *a))
    with pytest.raises(BackboneError, match="4-bit loading needs bitsandbytes"):
        load_text_backbone(BackboneSpec(load_in_4bit=True))
