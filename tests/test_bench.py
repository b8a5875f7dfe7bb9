from prefdiv import bench
from prefdiv.config import GenerationParams

GEN = GenerationParams(
    max_new_tokens=6, temperature=0.7, top_k=40, no_repeat_ngram_size=2, min_tokens=0, batch_size=4
)


def test_both_loops_generate_and_padding_side_is_restored(tiny_policy):
    model, tok = tiny_policy
    prompts = ["A terrible film.", "I loved every minute of it", "Boring", "The plot made no"]
    r = bench.compare_throughput(model, tok, prompts, k=2, gen=GEN, seed=0)
    assert r["reference_tokens"] > 0 and r["ours_tokens"] > 0
    assert r["reference_tokens"] <= len(prompts) * 2 * GEN.max_new_tokens
    assert r["speedup"] > 0
    assert tok.padding_side == "left"


def test_new_tokens_stop_at_eos_or_pad():
    assert bench._new_tokens([5, 6, 0, 7], eos=0, pad=0) == 2
    assert bench._new_tokens([5, 6, 7], eos=0, pad=9) == 3
