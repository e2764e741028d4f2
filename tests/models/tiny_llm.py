"""A tiny random Llama and a word-level tokenizer, saved to a folder like a real checkpoint.

Nothing is downloaded: the tokenizer is trained on a few sentences; the weights are random.
The code path, shapes, history and stopping are real even though the words are not.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "USER: <Img> </Img> ASSISTANT: ### : ; , . ? ( ) = x y w h px mm^2",
    "Is there any anomaly in the image? Are there any defects? How many defects are there?",
    "Yes, two, upper centre and lower centre. No, the pouch cell looks normal.",
    "upper lower left right centre region one two three four big small scratch bubble",
    "Where is the defect? How big is the upper bubble? What shape is it?",
    "Measured facts: Product pouch cell Verdict fail pass Defect regions area peak score",
]


def make_tiny_llm(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write ``config.json``, weights and tokenizer of a tiny Llama to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=specials))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    cfg = LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.2,  # larger than real models, so that inputs visibly steer outputs
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
