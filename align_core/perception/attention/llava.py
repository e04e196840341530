"""LLaVA-family patch scorer: a vision-language model rates each patch on a 1-6 scale.

This is the meaning-map rating task (Henderson & Hayes 2017 asked people how "informative or
recognizable" each patch was, 1-6) put to a vision-language model. Instead of generating text,
one batched forward pass reads the logits of the six rating tokens at the answer position; the
patch score is the expected rating under their softmax, a continuous value in [1, 6].

Weights always come from a local directory (``LlavaForConditionalGeneration`` +
``AutoProcessor``, ``local_files_only``): nothing is downloaded. :func:`build_tiny_llava` writes
a tiny random-initialised model in the same format so tests and the demo run the real loading
and scoring code; its config is marked untrained and the scorer's metadata says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from align_core.io.atomic import atomic_directory
from align_core.io.hashing import weights_head_tail_fingerprint
from align_core.perception.attention.base import check_frame

__all__ = [
    "LlavaPatchScorer",
    "build_tiny_llava",
]

DEFAULT_PROMPT = (
    "USER: <image>\nThis is a small patch cut out of a video frame. On a scale from 1 to 6, "
    "where 1 is not at all and 6 is very, how informative or recognizable is this patch? "
    "Answer with a single digit. ASSISTANT:"
)
RATINGS = ("1", "2", "3", "4", "5", "6")
PROVENANCE_KEY = "align_provenance"
TRAINED_KEY = "align_trained"


class LlavaPatchScorer:
    """Expected 1-6 rating of each circular patch from a local LLaVA-family model.

    Each patch is the square around its circle, with the pixels outside the circle (and outside
    the frame) set to the processor's mean colour, i.e. zero after normalisation. Patches go
    through the model's own processor in batches of ``batch_size``, one forward pass per batch
    with ``logits_to_keep=1``.
    """

    name = "llava"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        prompt: str = DEFAULT_PROMPT,
        batch_size: int = 16,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        self.model_path = Path(model_path).expanduser().resolve()
        if not (self.model_path / "config.json").is_file():
            raise ValueError(f"llava scorer: {self.model_path} is not a local model directory (no config.json)")
        if batch_size < 1:
            raise ValueError(f"llava scorer: batch_size must be >= 1, got {batch_size}")
        self.prompt = prompt
        self.batch_size = int(batch_size)
        self.device = device
        load_kwargs: dict[str, Any] = {"local_files_only": True}
        if dtype is not None:
            load_kwargs["dtype"] = getattr(torch, dtype)
        try:
            self.processor = AutoProcessor.from_pretrained(self.model_path, local_files_only=True)
            self.model = LlavaForConditionalGeneration.from_pretrained(self.model_path, **load_kwargs)
        except (OSError, ValueError) as exc:
            raise ValueError(f"llava scorer: cannot load model/processor from {self.model_path} ({exc})") from exc
        self.model.to(device).eval()
        self._fingerprint = weights_head_tail_fingerprint(self.model_path)
        self._rating_ids, self._n_trailing = self._rating_tokens()
        image_mean = getattr(self.processor.image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
        self._fill = np.clip(np.rint(np.asarray(image_mean, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)

    def _rating_tokens(self) -> tuple[list[int], int]:
        """Token ids of the six ratings right after the prompt, and how many tokens the tokenizer
        appends after the answer (e.g. an end-of-sequence), checked to be the same for every digit."""
        tokenizer = self.processor.tokenizer
        encoded = [list(tokenizer(self.prompt + digit)["input_ids"]) for digit in RATINGS]
        first = encoded[0]
        split = 0
        while all(split < len(e) for e in encoded) and len({e[split] for e in encoded}) == 1:
            split += 1
        ids = [e[split] if split < len(e) else -1 for e in encoded]
        trailing = [tuple(e[split + 1 :]) for e in encoded]
        if len(set(ids)) != len(RATINGS) or -1 in ids or len(set(trailing)) != 1:
            raise ValueError(
                f"llava scorer {self.model_path}: the tokenizer does not encode the ratings 1-6 as one "
                f"distinct token each after the prompt ({[tokenizer.convert_ids_to_tokens(e[split:]) for e in encoded]})"
            )
        if first[:split] != encoded[-1][:split]:
            raise ValueError(f"llava scorer {self.model_path}: prompt tokens differ between ratings")
        return ids, len(trailing[0])

    @property
    def scorer_id(self) -> str:
        return f"llava({self.model_path.name}@{self._fingerprint['sha256_head_tail'][:12]})"

    def metadata(self) -> dict[str, Any]:
        config = self.model.config
        provenance = getattr(config, PROVENANCE_KEY, None)
        trained = getattr(config, TRAINED_KEY, None)
        return {
            "scorer": self.name,
            "scorer_id": self.scorer_id,
            "weights": str(self.model_path),
            "weights_fingerprint": self._fingerprint,
            "trained": trained,
            "provenance": provenance
            or "local weights; their training provenance is not recorded in the model directory",
            "num_parameters": int(sum(p.numel() for p in self.model.parameters())),
            "prompt": self.prompt,
            "rating_token_ids": self._rating_ids,
        }

    def crop_patches(self, frame: np.ndarray, centres: np.ndarray, radius_px: float) -> np.ndarray:
        """``uint8 (n, 2R+1, 2R+1, 3)`` circular patches, outside the circle set to the fill colour."""
        frame = check_frame(frame)
        half = int(np.ceil(radius_px))
        size = 2 * half + 1
        padded = np.empty((frame.shape[0] + 2 * half, frame.shape[1] + 2 * half, 3), dtype=np.uint8)
        padded[:] = self._fill
        padded[half : half + frame.shape[0], half : half + frame.shape[1]] = frame
        offsets = np.arange(-half, half + 1)
        outside = offsets[:, None] ** 2 + offsets[None, :] ** 2 > radius_px**2
        centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        cols = np.clip(np.rint(centres[:, 0]).astype(np.int64), 0, frame.shape[1] - 1)
        rows = np.clip(np.rint(centres[:, 1]).astype(np.int64), 0, frame.shape[0] - 1)
        patches = np.empty((len(centres), size, size, 3), dtype=np.uint8)
        for k, (row, col) in enumerate(zip(rows, cols, strict=True)):
            patches[k] = padded[row : row + size, col : col + size]
        patches[:, outside] = self._fill
        return patches

    def rate_images(self, images: np.ndarray) -> np.ndarray:
        """Expected rating in [1, 6] for each ``uint8 (H, W, 3)`` image, one forward per batch."""
        import torch

        images = np.asarray(images)
        ratings = np.empty(len(images), dtype=np.float64)
        cut = 1 + self._n_trailing  # drop the rating digit (and anything after it)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = list(images[start : start + self.batch_size])
                inputs = self.processor(images=batch, text=[self.prompt + RATINGS[0]] * len(batch), return_tensors="pt")
                input_ids = inputs["input_ids"][:, :-cut]
                attention_mask = inputs["attention_mask"][:, :-cut]
                if not bool(attention_mask.all()):
                    raise ValueError(f"llava scorer {self.model_path}: identical prompts were padded unexpectedly")
                out = self.model(
                    input_ids=input_ids.to(self.device),
                    attention_mask=attention_mask.to(self.device),
                    pixel_values=inputs["pixel_values"].to(self.device, dtype=self.model.dtype),
                    logits_to_keep=1,
                )
                logits = out.logits[:, -1, self._rating_ids].float()
                probs = torch.softmax(logits, dim=-1).cpu().numpy()
                ratings[start : start + len(batch)] = probs @ np.arange(1, 7, dtype=np.float64)
        return ratings

    def score_patches(
        self, frame: np.ndarray, centres: np.ndarray, radius_px: float, *, frame_index: int | None = None
    ) -> np.ndarray:
        return self.rate_images(self.crop_patches(frame, centres, radius_px))


def build_tiny_llava(directory: str | os.PathLike[str], *, seed: int = 0, prompt: str = DEFAULT_PROMPT) -> Path:
    """Write a tiny random-initialised LLaVA (CLIP vision tower + Llama text model, ~40k
    parameters) with a word-level tokenizer and a PIL image processor, loadable by
    :class:`LlavaPatchScorer` through the same ``from_pretrained`` path as a real checkpoint.

    Its ratings are meaningless: the config carries ``align_trained=False`` and a provenance
    note, which the scorer's metadata reports, so it is never passed off as a trained model.
    """
    import torch
    from transformers import LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tokenizer, vocab = _word_level_tokenizer(prompt)
    image_size, patch = 28, 14
    processor = LlavaProcessor(
        image_processor=LlavaImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    config = _tiny_llava_config(vocab, image_size, patch)
    setattr(config, PROVENANCE_KEY, f"random-init tiny LlavaConfig (seed {seed}) built for tests; untrained")
    setattr(config, TRAINED_KEY, False)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    target = Path(directory)
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "ALIGN_README.json").write_text(
            json.dumps({"what": "tiny random LLaVA for tests", "trained": False, "seed": seed}), encoding="utf-8"
        )
    return target


def _word_level_tokenizer(prompt: str) -> tuple[Any, dict[str, int]]:
    """A fast tokenizer knowing only the specials, the prompt's words and the ratings; and its vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    vocab = {token: index for index, token in enumerate(specials)}
    words = [w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(prompt.replace("<image>", " "))]
    for word in [*words, *RATINGS]:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<image>"],
    )
    return tokenizer, vocab


def _tiny_llava_config(vocab: dict[str, int], image_size: int, patch: int) -> Any:
    """A two-layer CLIP vision tower and a two-layer Llama over ``vocab``."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    return LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
            projection_dim=16,
        ),
        text_config=LlamaConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=vocab["<pad>"],
            bos_token_id=vocab["<s>"],
            eos_token_id=vocab["</s>"],
        ),
        image_token_index=vocab["<image>"],
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_layer=-1,
    )
