"""GPT-2 sampling on a static KV cache, the decode step replayed as one CUDA graph.

`sampling.decode` runs transformers' forward once per new token: a dynamic cache that grows by
concatenation (a copy of the whole cache per step), Python-side mask building, and some 200
kernel launches that the GPU waits on at GPT-2 small's sizes. Here the cache is preallocated for
the prompt plus every new token, and one step — the forward of the last token, the no-repeat
n-gram ban, temperature, top-k and the draw — reads and writes only fixed buffers, so it can be
captured once as a CUDA graph and replayed for every token (on the CPU it runs eagerly; the tests
compare it with `sampling.decode` there).

Same mathematics as `sampling.decode`: the prompt's forward (prefill) is transformers' own; each
step calls the model's own modules (layer norms, projections, MLP, LM head) under the same
autocast; attention is scaled-dot-product attention over the cache with the positions not yet
written masked out (exactly zero weight), and the ban, temperature, top-k and draw are those of
`generate()`, in its order. Only GPT-2-architecture models (`GPT2LMHeadModel`) take this path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache, GPT2LMHeadModel

from prefdiv.config import GenerationParams

# How often (in steps) the host checks whether every row has stopped: each check waits for the GPU.
_CHECK_EVERY = 16
_WARMUP = 3  # eager steps on a side stream before the capture (CUDA graph requirement)
_WINDOW = 32  # attention-window granularity of the captured steps (slots)


def next_logits(model, input_ids, attention_mask, position_ids, cache):
    """(B, V) float32 logits of the token after each row, through transformers' own forward
    (`cache` grows by the new positions). Both decoders feed prompts (and `sampling.decode` every
    step) through here."""
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1].float()


def supported(model) -> bool:
    """Whether `model` can take the static path (GPT-2 architecture, SDPA attention)."""
    return isinstance(model, GPT2LMHeadModel) and not model.config.add_cross_attention


def ban_ngrams(logits, history, length, n: int):
    """`generate()`'s no-repeat-n-gram ban on a fixed-size history: (B, V) logits with -inf where
    the next token would repeat an n-gram of `history[:, :length]`.

    history: (B, T_cap) token ids, valid up to `length` (a 0-d tensor, so the shape never
    changes); positions ≥ length are ignored. Equal to transformers' NoRepeatNGramLogitsProcessor
    on `history[:, :length]` (tested): the last n − 1 tokens are matched against every complete
    window, and each match bans the window's last token.
    """
    vocab = logits.shape[-1]
    windows = history.unfold(1, n, 1)  # (B, T_cap − n + 1, n)
    prefix = history.index_select(1, length - (n - 1) + torch.arange(n - 1, device=logits.device))
    matches = (windows[..., :-1] == prefix[:, None]).all(-1)
    # A window is complete when its last token lies before `length` (as in the dynamic ban).
    starts = torch.arange(windows.shape[1], device=logits.device)
    matches &= starts <= length - n
    banned = logits.new_zeros((logits.shape[0], vocab + 1), dtype=torch.bool)
    banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab), vocab), True)
    return logits.masked_fill(banned[:, :vocab], -float("inf"))


def inverse_cdf(probs):
    """One draw per row of `probs` (B, V): the first token whose cumulative probability exceeds
    a uniform u·(row total). The distribution of `torch.multinomial(probs, 1)`, which on the CPU
    costs ~7× more over a full vocabulary (a search per row instead of its generic sampler); a
    token of probability 0 is never drawn (`right=True`: the cumulative sum must step past u)."""
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], 1, device=probs.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp(max=probs.shape[-1] - 1).squeeze(-1)


def draw(logits, *, gen: GenerationParams):
    """Temperature, then top-k, then one draw among the candidates: (B,) token ids."""
    logits = logits / gen.temperature
    if not gen.top_k:
        return inverse_cdf(logits.softmax(-1))
    logits, candidates = logits.topk(min(gen.top_k, logits.shape[-1]), dim=-1)
    return candidates.gather(-1, torch.multinomial(logits.softmax(-1), 1)).squeeze(-1)


class StaticDecoder:
    """Fixed buffers for `rows` sequences of ≤ `capacity` tokens and the step that fills them.

    On GPU the step is captured once per attention window (multiples of :data:`_WINDOW` slots):
    a step attends over the smallest window that holds every written slot, not the whole cache,
    so early steps read less of it.
    """

    def __init__(
        self, model, rows: int, capacity: int, gen: GenerationParams, eos: int, pad: int, graph=True
    ):
        cfg, dev = model.config, model.device
        self.use_graph = graph and dev.type == "cuda"  # False: every step runs eagerly
        self.model, self.gen, self.eos, self.pad = model, gen, eos, pad
        self.heads, self.head_dim = cfg.n_head, cfg.n_embd // cfg.n_head
        self.kv_shape = (cfg.n_layer, rows, self.heads, capacity, self.head_dim)
        self.k = self.v = None  # allocated by the first prefill, in the dtype its cache has
        self.history = torch.full((rows, capacity), pad, dtype=torch.long, device=dev)
        self.valid = torch.zeros((rows, capacity), dtype=torch.bool, device=dev)
        self.token = torch.zeros(rows, dtype=torch.long, device=dev)  # last drawn, not yet fed
        self.position = torch.zeros(rows, dtype=torch.long, device=dev)  # its position id
        self.cursor = torch.zeros((), dtype=torch.long, device=dev)  # its cache slot
        self.done = torch.zeros(rows, dtype=torch.bool, device=dev)
        self.out = torch.full((rows, gen.max_new_tokens), pad, dtype=torch.long, device=dev)
        self.column = torch.zeros((), dtype=torch.long, device=dev)  # its column of `out`
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}

    def window(self, slot: int) -> int:
        """Slots a step writing `slot` attends over: the next multiple of _WINDOW (≤ capacity)."""
        return min(-(-(slot + 1) // _WINDOW) * _WINDOW, self.history.shape[1])

    def _select(self, logits, length):
        if self.gen.no_repeat_ngram_size:
            logits = ban_ngrams(logits, self.history, length, self.gen.no_repeat_ngram_size)
        token = draw(logits, gen=self.gen).masked_fill(self.done, self.pad)
        self.out.index_copy_(1, self.column[None], token[:, None])
        self.done |= token == self.eos
        self.token.copy_(token)

    def step(self, window: int):
        """Feed `token` at slot `cursor` (< window), draw the next one into `token` and `out`."""
        m, slot = self.model, self.cursor[None]
        self.history.index_copy_(1, slot, self.token[:, None])
        self.valid.index_fill_(1, slot, True)
        x = m.transformer.wte(self.token[:, None]) + m.transformer.wpe(self.position[:, None])
        mask = self.valid[:, None, None, :window]  # (B, 1, 1, window): written slots only
        rows = x.shape[0]
        for i, block in enumerate(m.transformer.h):
            q, k, v = block.attn.c_attn(block.ln_1(x)).split(x.shape[-1], dim=2)
            q, k, v = (
                t.view(rows, 1, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v)
            )
            self.k[i].index_copy_(2, slot, k.to(self.k.dtype))
            self.v[i].index_copy_(2, slot, v.to(self.v.dtype))
            keys, values = self.k[i, :, :, :window], self.v[i, :, :, :window]
            a = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, scale=block.attn.scaling
            )
            x = block.attn.c_proj(a.transpose(1, 2).reshape(rows, 1, -1)) + x
            x = block.mlp(block.ln_2(x)) + x
        logits = m.lm_head(m.transformer.ln_f(x))[:, -1].float()
        self.cursor += 1
        self.position += 1
        self.column += 1
        self._select(logits, self.cursor)

    def prefill(self, input_ids, attention_mask) -> int:
        """The prompts' forward (transformers' own, as `sampling.decode`) into the buffers, and the
        first new token. Returns the slot of that token (the prompt length)."""
        p = input_ids.shape[1]
        if p + self.gen.max_new_tokens - 1 > self.history.shape[1]:
            raise ValueError(f"{p} prompt tokens + {self.gen.max_new_tokens} new exceed the cache")
        cache = DynamicCache()
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = next_logits(self.model, input_ids, attention_mask, position_ids, cache)
        dtype = cache.layers[0].keys.dtype  # autocast's (bf16 on GPU), as the dynamic cache
        if self.k is None or self.k.dtype != dtype:
            self.k = torch.zeros(self.kv_shape, dtype=dtype, device=input_ids.device)
            self.v = torch.zeros_like(self.k)
            self.graphs.clear()
        for i, layer in enumerate(cache.layers):
            self.k[i, :, :, :p].copy_(layer.keys)
            self.v[i, :, :, :p].copy_(layer.values)
        self.history[:, :p].copy_(input_ids)
        self.history[:, p:].fill_(self.pad)
        self.valid.zero_()
        self.valid[:, :p].copy_(attention_mask.bool())
        self.done.zero_()
        self.out.fill_(self.pad)
        self.position.copy_(position_ids[:, -1] + 1)
        self.cursor.fill_(p)
        self.column.zero_()
        self._select(logits, self.cursor)
        return p

    def run(self, input_ids, attention_mask):
        """(rows, max_new_tokens) new ids, `pad` after EOS (as `sampling.decode`, untrimmed)."""
        p = self.prefill(input_ids, attention_mask)
        if self.use_graph and not self.graphs:
            self._capture()  # runs steps on the buffers: prefill again after it
            p = self.prefill(input_ids, attention_mask)
        for i in range(self.gen.max_new_tokens - 1):
            if i % _CHECK_EVERY == 0 and bool(self.done.all()):
                break
            window = self.window(p + i)
            if self.graphs:
                self.graphs[window].replay()
            else:
                self.step(window)
        return self.out

    def _capture(self):
        """Record the step as one CUDA graph per window, after warm-up steps on a side stream (a
        CUDA graph requirement). The graphs share one memory pool: a step's temporaries die with
        it, so the graphs never need each other's memory."""
        windows = sorted({self.window(slot) for slot in range(self.history.shape[1])})
        pool = torch.cuda.graph_pool_handle()
        for window in windows:
            self.cursor.zero_()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(_WARMUP):
                    self.step(window)
            torch.cuda.current_stream().wait_stream(stream)
            self.cursor.zero_()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.step(window)
            self.graphs[window] = graph


def run_padded(decoder: StaticDecoder, input_ids, attention_mask):
    """`decoder.run` on a batch of ≤ its rows: a short (last) batch is filled up with copies of its
    last row, whose samples are dropped. Returns (len(input_ids), max_new_tokens)."""
    rows, fill = len(input_ids), decoder.token.shape[0] - len(input_ids)
    if fill:
        input_ids = torch.cat([input_ids, input_ids[-1:].expand(fill, -1)])
        attention_mask = torch.cat([attention_mask, attention_mask[-1:].expand(fill, -1)])
    return decoder.run(input_ids, attention_mask)[:rows]
